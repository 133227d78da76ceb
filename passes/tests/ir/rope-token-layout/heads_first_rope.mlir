// passes: rope-token-layout, canonicalize
// A heads-first rope over transpose(reshape(q)) whose result is packed back for attention: the
// rope runs on [B, L, H*D] and both transposes go. A rope over a plain argument stays.
func.func @main(%q: tensor<?x?x32xf32>, %c: tensor<?x?x4xf32>, %s: tensor<?x?x4xf32>, %x: tensor<?x4x?x8xf32>) -> (tensor<?x?x32xf32>, tensor<?x4x?x8xf32>) {
  %q4 = "lt2.reshape"(%q) {shape = ["batch", "seq", "4", "8"]} : (tensor<?x?x32xf32>) -> tensor<?x?x4x8xf32>
  %qt = "lt2.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x?x4x8xf32>) -> tensor<?x4x?x8xf32>
  %r = "lt2.rope"(%qt, %c, %s) {interleaved = false, num_heads = 4 : i64, rotary_dim = 0 : i64} : (tensor<?x4x?x8xf32>, tensor<?x?x4xf32>, tensor<?x?x4xf32>) -> tensor<?x4x?x8xf32>
  %rt = "lt2.transpose"(%r) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x4x?x8xf32>) -> tensor<?x?x4x8xf32>
  %p = "lt2.reshape"(%rt) {shape = ["batch", "seq", "32"]} : (tensor<?x?x4x8xf32>) -> tensor<?x?x32xf32>
  %o = "lt2.rope"(%x, %c, %s) {interleaved = false, num_heads = 4 : i64, rotary_dim = 0 : i64} : (tensor<?x4x?x8xf32>, tensor<?x?x4xf32>, tensor<?x?x4xf32>) -> tensor<?x4x?x8xf32>
  return %p, %o : tensor<?x?x32xf32>, tensor<?x4x?x8xf32>
}

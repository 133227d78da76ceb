// passes: reroll-loops, canonicalize
// Two copies whose per-copy gate s (a sigmoid) is also read after them, as Ouro's per-loop exit
// gates are: the loop yields s as a scan output [2, ?, 8] and the reader gets row 0 of it
// (lt2.gather); the carried value d is the loop's first result.
func.func @main(%x: tensor<?x8xf32>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %w = "lt2.weight"() {name = "w"} : () -> tensor<8x8xf32>
  %b0 = "lt2.linear"(%x, %w) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c0 = "lt2.silu"(%b0) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %s0 = "lt2.sigmoid"(%c0) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %d0 = "lt2.add"(%x, %s0) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %b1 = "lt2.linear"(%d0, %w) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c1 = "lt2.silu"(%b1) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %s1 = "lt2.sigmoid"(%c1) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %d1 = "lt2.add"(%d0, %s1) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  return %d1, %s0 : tensor<?x8xf32>, tensor<?x8xf32>
}

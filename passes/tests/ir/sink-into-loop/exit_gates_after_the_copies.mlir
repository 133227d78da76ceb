// passes: reroll-loops, sink-into-loop, canonicalize
// Ouro's unrolled export: three copies of the shared layer, then each copy's exit gate
// λ_t = sigmoid(h_t · g) computed after all of them (rows 1 and 2 of the state scan, and the
// loop's result). The gate moves into the loop as its one scan output computed by a sigmoid;
// the state scan goes (nothing reads it any more); the lm head, read of the last state only,
// stays after the loop; the survival 1 - λ_t (read for t = 0 only) is computed from row 0.
func.func @main(%x: tensor<?x8xf32>) -> (tensor<?x16xf32>, tensor<?x1xf32>, tensor<?x1xf32>, tensor<?x1xf32>, tensor<?x1xf32>) {
  %w = "lt2.weight"() {name = "w"} : () -> tensor<8x8xf32>
  %g = "lt2.weight"() {name = "exit_gate"} : () -> tensor<8x1xf32>
  %head = "lt2.weight"() {name = "lm_head"} : () -> tensor<8x16xf32>
  %one = "lt2.constant"() {value = dense<1.0> : tensor<f32>} : () -> tensor<f32>
  %b0 = "lt2.linear"(%x, %w) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c0 = "lt2.silu"(%b0) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %e0 = "lt2.mul"(%c0, %b0) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %h0 = "lt2.add"(%x, %e0) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %b1 = "lt2.linear"(%h0, %w) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c1 = "lt2.silu"(%b1) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %e1 = "lt2.mul"(%c1, %b1) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %h1 = "lt2.add"(%h0, %e1) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %b2 = "lt2.linear"(%h1, %w) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c2 = "lt2.silu"(%b2) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %e2 = "lt2.mul"(%c2, %b2) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %h2 = "lt2.add"(%h1, %e2) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %logits = "lt2.linear"(%h2, %head) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x16xf32>) -> tensor<?x16xf32>
  %z0 = "lt2.linear"(%h0, %g) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x1xf32>) -> tensor<?x1xf32>
  %l0 = "lt2.sigmoid"(%z0) : (tensor<?x1xf32>) -> tensor<?x1xf32>
  %z1 = "lt2.linear"(%h1, %g) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x1xf32>) -> tensor<?x1xf32>
  %l1 = "lt2.sigmoid"(%z1) : (tensor<?x1xf32>) -> tensor<?x1xf32>
  %z2 = "lt2.linear"(%h2, %g) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x1xf32>) -> tensor<?x1xf32>
  %l2 = "lt2.sigmoid"(%z2) : (tensor<?x1xf32>) -> tensor<?x1xf32>
  %s0 = "lt2.sub"(%one, %l0) : (tensor<f32>, tensor<?x1xf32>) -> tensor<?x1xf32>
  return %logits, %l0, %l1, %l2, %s0 : tensor<?x16xf32>, tensor<?x1xf32>, tensor<?x1xf32>, tensor<?x1xf32>, tensor<?x1xf32>
}

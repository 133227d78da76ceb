// passes: reroll-loops, canonicalize
// Three copies of one layer become lt2.loop {trip_count = 3} carrying the hidden state: the
// weight w read by a second lt2.weight op of the same name is the same weight, the per-copy
// weights e0, e1, e2 become rows of a stack read with the loop counter, and the int64
// constants 0, 1, 2 indexing the table become the loop counter itself.
func.func @main(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %w = "lt2.weight"() {name = "w"} : () -> tensor<8x8xf32>
  %tab = "lt2.weight"() {name = "tab"} : () -> tensor<3x8xf32>
  %e0 = "lt2.weight"() {name = "e0"} : () -> tensor<8xf32>
  %i0 = "lt2.constant"() {value = dense<0> : tensor<i64>} : () -> tensor<i64>
  %a0 = "lt2.mul"(%x, %e0) : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %r0 = "lt2.embed"(%tab, %i0) : (tensor<3x8xf32>, tensor<i64>) -> tensor<8xf32>
  %m0 = "lt2.add"(%a0, %r0) : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %b0 = "lt2.linear"(%m0, %w) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c0 = "lt2.silu"(%b0) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %d0 = "lt2.add"(%x, %c0) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %e1 = "lt2.weight"() {name = "e1"} : () -> tensor<8xf32>
  %i1 = "lt2.constant"() {value = dense<1> : tensor<i64>} : () -> tensor<i64>
  %w1 = "lt2.weight"() {name = "w"} : () -> tensor<8x8xf32>
  %a1 = "lt2.mul"(%d0, %e1) : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %r1 = "lt2.embed"(%tab, %i1) : (tensor<3x8xf32>, tensor<i64>) -> tensor<8xf32>
  %m1 = "lt2.add"(%a1, %r1) : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %b1 = "lt2.linear"(%m1, %w1) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c1 = "lt2.silu"(%b1) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %d1 = "lt2.add"(%d0, %c1) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %e2 = "lt2.weight"() {name = "e2"} : () -> tensor<8xf32>
  %i2 = "lt2.constant"() {value = dense<2> : tensor<i64>} : () -> tensor<i64>
  %a2 = "lt2.mul"(%d1, %e2) : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %r2 = "lt2.embed"(%tab, %i2) : (tensor<3x8xf32>, tensor<i64>) -> tensor<8xf32>
  %m2 = "lt2.add"(%a2, %r2) : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %b2 = "lt2.linear"(%m2, %w) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c2 = "lt2.silu"(%b2) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %d2 = "lt2.add"(%d1, %c2) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %out = "lt2.mul"(%d2, %d2) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  return %out : tensor<?x8xf32>
}

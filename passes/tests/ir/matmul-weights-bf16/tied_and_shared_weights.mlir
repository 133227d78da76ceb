// passes: matmul-weights-bf16
// The embedding table feeds both the gather (stays f32) and the tied LM head (reads a bf16
// cast); `w` feeds two linears inside the loop (one cast, made next to the weight); a linear
// whose right operand is an activation, and a norm weight, are left alone.
func.func @main(%ids: tensor<?x?xi64>) -> tensor<?x?x8xf32> {
  %e = "lt2.weight"() {name = "embed"} : () -> tensor<8x4xf32>
  %w = "lt2.weight"() {name = "w"} : () -> tensor<4x4xf32>
  %n = "lt2.weight"() {name = "norm"} : () -> tensor<4xf32>
  %x = "lt2.embed"(%e, %ids) : (tensor<8x4xf32>, tensor<?x?xi64>) -> tensor<?x?x4xf32>
  %r = "lt2.loop"(%x) ({
  ^bb0(%i: tensor<i64>, %h: tensor<?x?x4xf32>):
    %a = "lt2.linear"(%h, %w) {transpose_w = false} : (tensor<?x?x4xf32>, tensor<4x4xf32>) -> tensor<?x?x4xf32>
    %b = "lt2.linear"(%a, %w) {transpose_w = true} : (tensor<?x?x4xf32>, tensor<4x4xf32>) -> tensor<?x?x4xf32>
    %y = "lt2.rms_norm"(%b, %n) {epsilon = 1.0e-6 : f32, axis = 2 : i64} : (tensor<?x?x4xf32>, tensor<4xf32>) -> tensor<?x?x4xf32>
    gpu.yield %y : tensor<?x?x4xf32>
  }) {trip_count = 2 : i64, operandSegmentSizes = array<i32: 1, 0, 0, 0, 0, 0, 0, 0>, resultSegmentSizes = array<i32: 1, 0, 0, 0, 0, 0, 0, 0>} : (tensor<?x?x4xf32>) -> tensor<?x?x4xf32>
  %t = "lt2.weight"() {name = "t"} : () -> tensor<4x4xf32>
  %m = "lt2.linear"(%r, %t) {transpose_w = false} : (tensor<?x?x4xf32>, tensor<4x4xf32>) -> tensor<?x?x4xf32>
  %logits = "lt2.linear"(%m, %e) {transpose_w = true} : (tensor<?x?x4xf32>, tensor<8x4xf32>) -> tensor<?x?x8xf32>
  return %logits : tensor<?x?x8xf32>
}

// passes: hoist-loop-invariants, canonicalize
func.func @main(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %w0 = "lt2.weight"() {name = "w"} : () -> tensor<4xf32>
  %r = "lt2.loop"(%x) ({
  ^bb0(%i: tensor<i64>, %h: tensor<?x4xf32>):
    %w = "lt2.weight"() {name = "w"} : () -> tensor<4xf32>
    %y = "lt2.rms_norm"(%h, %w) {epsilon = 1.0e-6 : f32, axis = 1 : i64} : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
    %z = "lt2.add"(%y, %w0) : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
    gpu.yield %z : tensor<?x4xf32>
  }) {trip_count = 4 : i64, operandSegmentSizes = array<i32: 1, 0, 0, 0, 0, 0, 0, 0>, resultSegmentSizes = array<i32: 1, 0, 0, 0, 0, 0, 0, 0>} : (tensor<?x4xf32>) -> tensor<?x4xf32>
  return %r : tensor<?x4xf32>
}

// passes: canonicalize
func.func @main(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %w1 = "lt2.weight"() {name = "w"} : () -> tensor<4xf32>
  %w2 = "lt2.weight"() {name = "w"} : () -> tensor<4xf32>
  %dead = "lt2.exp"(%x) : (tensor<?x4xf32>) -> tensor<?x4xf32>
  %dead2 = "lt2.neg"(%dead) : (tensor<?x4xf32>) -> tensor<?x4xf32>
  %a = "lt2.mul"(%x, %w1) : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  %b = "lt2.add"(%a, %w2) : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  return %b : tensor<?x4xf32>
}

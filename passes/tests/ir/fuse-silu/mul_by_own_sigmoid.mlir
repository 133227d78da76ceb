// passes: fuse-silu, canonicalize
func.func @main(%x: tensor<?x16xf32>, %y: tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<?x16xf32>) {
  %s = "lt2.sigmoid"(%x) : (tensor<?x16xf32>) -> tensor<?x16xf32>
  %a = "lt2.mul"(%x, %s) : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  %t = "lt2.sigmoid"(%y) : (tensor<?x16xf32>) -> tensor<?x16xf32>
  %b = "lt2.mul"(%x, %t) : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  return %a, %b : tensor<?x16xf32>, tensor<?x16xf32>
}

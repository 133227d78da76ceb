//! The graph importer: walks ONNX nodes in dependency order (checked with petgraph), keeps
//! what it knows about every value (`value.rs`), folds what is known at compile time, and
//! emits lt2 ops through the typed builders for the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use petgraph::graph::DiGraph;
use tract_onnx::pb::{GraphProto, NodeProto};

use lt2_ir::builder::{ConstValues, FuncBuilder, Val};

/// Compile-time tensors up to this many elements become `lt2.constant`s, larger ones weights.
const SMALL_CONSTANT: usize = 16;
use lt2_runtime::dim::Dim;

use crate::attrs::{node_err, node_name};
use crate::error::FrontendError;
use crate::ops;
use crate::value::{Known, Rt, Value};
use lt2_ir::{WeightBytes, WeightData, WeightStore};

/// One lexical scope: the main graph, or a loop body nested in it.
#[derive(Default)]
struct Scope {
    values: HashMap<String, Value>,
    /// Weights already materialised in this scope (usable by nested scopes too).
    weight_vals: HashMap<String, Val>,
}

/// The importer's state while it walks a model.
pub struct Importer {
    pub b: FuncBuilder,
    pub weights: WeightStore,
    pub warnings: Vec<String>,
    /// The model's opset for the default domain.
    pub opset: i64,
    pub base_dir: Option<PathBuf>,
    /// Outputs of `Transpose(initializer)` nodes, to the initializer: lets MatMul use the
    /// original weight transposed instead of storing a transposed copy (tied LM heads).
    pub transposed_from: HashMap<String, String>,
    /// Every value name some node (in any graph) or a graph output reads: outputs outside this
    /// set are never needed, so ops may skip them instead of refusing them.
    pub used: std::collections::HashSet<String>,
    scopes: Vec<Scope>,
    const_counter: usize,
}

impl Importer {
    pub fn new(b: FuncBuilder, opset: i64, base_dir: Option<&Path>) -> Importer {
        Importer {
            b,
            weights: WeightStore::default(),
            warnings: Vec::new(),
            opset,
            base_dir: base_dir.map(Path::to_path_buf),
            transposed_from: HashMap::new(),
            used: Default::default(),
            scopes: vec![Scope::default()],
            const_counter: 0,
        }
    }

    pub fn push_scope(&mut self) {
        self.scopes.push(Scope::default());
    }
    pub fn pop_scope(&mut self) {
        self.scopes.pop();
    }

    /// Binds an ONNX value name in the innermost scope.
    pub fn set(&mut self, name: &str, v: Value) {
        if let Some(s) = self.scopes.last_mut() {
            s.values.insert(name.to_string(), v);
        }
    }

    /// Looks an ONNX value up, innermost scope first (outer-scope capture).
    pub fn lookup(&self, name: &str) -> Option<&Value> {
        self.scopes.iter().rev().find_map(|s| s.values.get(name))
    }

    /// Input `i` of `node`; None when absent or named "".
    pub fn input(&self, node: &NodeProto, i: usize) -> Result<Option<Value>, FrontendError> {
        match node.input.get(i) {
            None => Ok(None),
            Some(n) if n.is_empty() => Ok(None),
            Some(n) => self.lookup(n).cloned().map(Some).ok_or_else(|| node_err(node, format!("input `{n}` is not defined before this node"))),
        }
    }

    /// Input `i`, which must be present.
    pub fn req(&self, node: &NodeProto, i: usize) -> Result<Value, FrontendError> {
        self.input(node, i)?.ok_or_else(|| node_err(node, format!("required input {i} is missing")))
    }

    /// Input `i` as a compile-time tensor, or an error saying it must be one.
    pub fn known(&self, node: &NodeProto, i: usize, what: &str) -> Result<Known, FrontendError> {
        match self.req(node, i)? {
            Value::Known(k) => Ok(k),
            Value::Rt(_) => Err(node_err(node, format!("{what} (input {i}) given at run time is not supported: it must be known at compile time (a constant or shape arithmetic)"))),
            Value::Unavailable(why) => Err(node_err(node, why)),
        }
    }

    /// Input `i` as a runtime tensor, materialising a compile-time one as a weight.
    pub fn rt(&mut self, node: &NodeProto, i: usize) -> Result<Rt, FrontendError> {
        let v = self.req(node, i)?;
        self.materialize(node, v)
    }

    /// Optional input `i` as a runtime tensor.
    pub fn opt_rt(&mut self, node: &NodeProto, i: usize) -> Result<Option<Rt>, FrontendError> {
        match self.input(node, i)? {
            None => Ok(None),
            Some(v) => self.materialize(node, v).map(Some),
        }
    }

    /// Makes a value available at run time: compile-time tensors become `lt2.weight`s (one per
    /// name and scope).
    pub fn materialize(&mut self, node: &NodeProto, v: Value) -> Result<Rt, FrontendError> {
        let k = match v {
            Value::Rt(r) => return Ok(r),
            Value::Known(k) => k,
            Value::Unavailable(why) => return Err(node_err(node, why)),
        };
        // Small constants stay in the IR (passes match on epsilons, exponents, shapes).
        if k.numel() <= SMALL_CONSTANT && k.bytes().is_some() {
            let key = format!("{:?}{:?}", k.shape, k.data);
            if let Some(v) = self.scopes.iter().rev().find_map(|s| s.weight_vals.get(&key)) {
                return Ok(Rt { val: v.clone(), shape: k.shape_dims() });
            }
            let loc = crate::attrs::node_name(node);
            let val = match &k.data {
                crate::value::KnownData::F32(v) => self.b.constant(k.ty(), ConstValues::F32(v), &loc),
                crate::value::KnownData::I64(v) => {
                    let ints: Vec<i64> = v.iter().map(|d| d.as_const().unwrap_or(0)).collect();
                    self.b.constant(k.ty(), ConstValues::I64(&ints), &loc)
                }
                crate::value::KnownData::Bool(v) => self.b.constant(k.ty(), ConstValues::Bool(v), &loc),
            };
            if let Some(s) = self.scopes.last_mut() {
                s.weight_vals.insert(key, val.clone());
            }
            return Ok(Rt { val, shape: k.shape_dims() });
        }
        if let (crate::value::KnownData::I64(v), None) = (&k.data, k.bytes()) {
            // Shape arithmetic used as data: evaluated from the bound dim symbols when the model runs.
            let dims: Vec<String> = v.iter().map(|d| d.to_string()).collect();
            let loc = crate::attrs::node_name(node);
            let flat = if k.shape.is_empty() { vec![] } else { vec![Dim::Const(v.len() as i64)] };
            let mut val = self.b.dim_values(&dims, crate::value::tensor_type(&flat, lt2_ir::Elem::I64), &loc);
            if k.shape.len() > 1 {
                val = self.b.reshape(&val, &Importer::dim_strings(&k.shape_dims()), k.ty(), &loc);
            }
            return Ok(Rt { val, shape: k.shape_dims() });
        }
        let bytes = match &k.data {
            crate::value::KnownData::F32(v) => WeightBytes::F32(v.clone()),
            _ => WeightBytes::Raw(k.bytes().ok_or_else(|| {
                node_err(node, format!("needs at run time a tensor of symbolic integers ({:?}); lt2c computes shapes at compile time only", k.dims()))
            })?),
        };
        let name = match &k.source {
            Some(s) => s.clone(),
            None => {
                self.const_counter += 1;
                format!("const.{}", self.const_counter)
            }
        };
        if let Some(v) = self.scopes.iter().rev().find_map(|s| s.weight_vals.get(&name)) {
            return Ok(Rt { val: v.clone(), shape: k.shape_dims() });
        }
        self.weights.insert(WeightData { name: name.clone(), elem: k.elem(), shape: k.shape.clone(), data: bytes });
        let val = self.b.weight(&name, k.ty(), &name);
        if let Some(s) = self.scopes.last_mut() {
            s.weight_vals.insert(name, val.clone());
        }
        Ok(Rt { val, shape: k.shape_dims() })
    }

    /// Imports every node of a graph (its inputs already bound), in dependency order.
    pub fn import_nodes(&mut self, g: &GraphProto) -> Result<(), FrontendError> {
        for idx in topo_order(g)? {
            let node = &g.node[idx];
            let f = ops::lookup(&node.domain, &node.op_type).ok_or_else(|| node_err(node, "unsupported op"))?;
            // An op fed an unavailable value yields unavailable values, unless it ignores that
            // input (GroupQueryAttention's sequence-length inputs).
            let ignores = |i: usize| node.domain == "com.microsoft" && node.op_type == "GroupQueryAttention" && (i == 5 || i == 6);
            let unavailable = node.input.iter().enumerate().find_map(|(i, n)| match self.lookup(n) {
                Some(Value::Unavailable(why)) if !ignores(i) => Some(why.clone()),
                _ => None,
            });
            let outs = match unavailable {
                Some(why) => vec![Value::Unavailable(why); node.output.len()],
                None => f(self, node)?,
            };
            for (i, name) in node.output.iter().enumerate() {
                if name.is_empty() {
                    continue;
                }
                let v = outs.get(i).cloned().ok_or_else(|| node_err(node, format!("output {i} (`{name}`) is not produced by lt2c's import of this op")))?;
                self.set(name, v);
            }
        }
        Ok(())
    }

    /// Whether output `i` of `node` exists and something reads it.
    pub fn output_used(&self, node: &NodeProto, i: usize) -> bool {
        node.output.get(i).is_some_and(|o| !o.is_empty() && self.used.contains(o))
    }

    /// The location string for ops made from `node`.
    pub fn loc(node: &NodeProto) -> String {
        node_name(node)
    }

    /// Dims as strings for shape attributes.
    pub fn dim_strings(dims: &[Dim]) -> Vec<String> {
        dims.iter().map(|d| d.to_string()).collect()
    }
}

/// Node indices in an order where every node comes after the producers of its inputs. ONNX
/// requires sorted graphs, but exporters get it wrong; petgraph finds the order or the cycle.
fn topo_order(g: &GraphProto) -> Result<Vec<usize>, FrontendError> {
    let mut dg = DiGraph::<usize, ()>::new();
    let ids: Vec<_> = (0..g.node.len()).map(|i| dg.add_node(i)).collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in &n.output {
            if !o.is_empty() {
                producer.insert(o, i);
            }
        }
    }
    for (i, n) in g.node.iter().enumerate() {
        let mut deps: Vec<&str> = n.input.iter().map(String::as_str).collect();
        // Values a subgraph reads from this scope are dependencies of the node that owns it.
        for a in &n.attribute {
            if let Some(sub) = &a.g {
                deps.extend(captured_names(sub));
            }
        }
        for d in deps {
            if let Some(&p) = producer.get(d) {
                if p != i {
                    dg.add_edge(ids[p], ids[i], ());
                }
            }
        }
    }
    petgraph::algo::toposort(&dg, None)
        .map(|o| o.into_iter().map(|n| dg[n]).collect())
        .map_err(|c| FrontendError::Graph(format!("the graph has a cycle through node `{}`", node_name(&g.node[dg[c.node_id()]]))))
}

/// Names a subgraph uses without defining them (outer-scope captures), recursively.
fn captured_names(g: &GraphProto) -> Vec<&str> {
    let mut defined: std::collections::HashSet<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
    defined.extend(g.initializer.iter().map(|t| t.name.as_str()));
    for n in &g.node {
        defined.extend(n.output.iter().map(String::as_str));
    }
    let mut out = Vec::new();
    for n in &g.node {
        for i in &n.input {
            if !i.is_empty() && !defined.contains(i.as_str()) {
                out.push(i.as_str());
            }
        }
        for a in &n.attribute {
            if let Some(sub) = &a.g {
                out.extend(captured_names(sub).into_iter().filter(|x| !defined.contains(x)));
            }
        }
    }
    out
}

//! ONNX `Loop` → `lt2.loop`: constant trip count, constant-true condition, carried values,
//! outer-scope captures (the shared weights) read directly from the region.

use tract_onnx::pb::NodeProto;

use lt2_runtime::dim::Dim;

use super::ImportFn;
use crate::attrs::{self, node_err};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::value::{Known, KnownData, Rt, Value};

pub(super) fn lookup(domain: &str, op: &str) -> Option<ImportFn> {
    match (domain, op) {
        ("", "Loop") => Some(onnx_loop),
        _ => None,
    }
}

fn onnx_loop(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let body = attrs::graph(node, "body")?;
    let trip = match imp.input(node, 0)? {
        Some(Value::Known(k)) => k.ints().and_then(|v| v.first().copied()).ok_or_else(|| node_err(node, "trip count M must be a constant integer"))?,
        Some(_) => return Err(node_err(node, "a trip count M computed at run time is not supported: it must be a constant")),
        None => return Err(node_err(node, "a Loop without a trip count M is a while loop; lt2c needs a constant trip count")),
    };
    match imp.input(node, 1)? {
        None => {}
        Some(Value::Known(Known { data: KnownData::Bool(b), .. })) if b.first() == Some(&true) => {}
        Some(_) => return Err(node_err(node, "the loop condition must be absent or the constant true")),
    }
    if trip < 1 {
        return Err(node_err(node, format!("trip count {trip} runs the body zero times; remove the Loop")));
    }
    let n_carried = node.input.len().saturating_sub(2);
    if body.input.len() != n_carried + 2 {
        return Err(node_err(node, format!("body takes {} inputs; it must take (iteration, condition, {n_carried} carried)", body.input.len())));
    }
    let inits: Vec<Rt> = (2..node.input.len()).map(|i| imp.rt(node, i)).collect::<Result<_, _>>()?;
    if inits.is_empty() {
        return Err(node_err(node, "the loop carries no values"));
    }
    let vals: Vec<_> = inits.iter().map(|r| r.val.clone()).collect();
    let loc = Importer::loc(node);
    let (iter, carried) = imp.b.begin_loop(&vals, trip, &loc).map_err(|e| node_err(node, e))?;
    imp.push_scope();
    imp.set(&body.input[0].name, Value::Rt(Rt { val: iter, shape: vec![] }));
    imp.set(&body.input[1].name, Value::Known(Known { shape: vec![], data: KnownData::Bool(vec![true]), source: None }));
    for ((inp, c), init) in body.input[2..].iter().zip(carried).zip(&inits) {
        imp.set(&inp.name, Value::Rt(Rt { val: c, shape: init.shape.clone() }));
    }
    for t in &body.initializer {
        let mut k = crate::tensor::decode(t, imp.base_dir.as_deref()).map_err(|e| node_err(node, format!("body initializer `{}`: {e}", t.name)))?;
        k.source = Some(t.name.clone());
        imp.set(&t.name, Value::Known(k));
    }
    let result = (|| {
        imp.import_nodes(body)?;
        let cond = imp.lookup(&body.output[0].name).cloned().ok_or_else(|| node_err(node, "body condition output is not defined"))?;
        match cond {
            Value::Known(Known { data: KnownData::Bool(b), .. }) if b.first() == Some(&true) => {}
            _ => return Err(node_err(node, "the body's condition output must stay the constant true (early exit is not supported)")),
        }
        let mut ys = Vec::new();
        for (o, init) in body.output[1..].iter().zip(&inits) {
            let v = imp.lookup(&o.name).cloned().ok_or_else(|| node_err(node, format!("body output `{}` is not defined", o.name)))?;
            let r = imp.materialize(node, v)?;
            if r.val.ty != init.val.ty || !same_shape(&r.shape, &init.shape) {
                return Err(node_err(node, format!("carried value `{}` changes shape across iterations ({:?} -> {:?})", o.name, init.shape, r.shape)));
            }
            ys.push(r.val);
        }
        let mut scans = Vec::new();
        for o in &body.output[1 + n_carried..] {
            let v = imp.lookup(&o.name).cloned().ok_or_else(|| node_err(node, format!("scan output `{}` is not defined", o.name)))?;
            scans.push(imp.materialize(node, v)?);
        }
        Ok((ys, scans))
    })();
    imp.pop_scope();
    let (ys, scans) = result?;
    let scan_vals: Vec<_> = scans.iter().map(|s| s.val.clone()).collect();
    let outs = imp.b.end_loop(&ys, &scan_vals).map_err(|e| node_err(node, e))?;
    let mut shapes: Vec<Vec<Dim>> = inits.into_iter().map(|i| i.shape).collect();
    for s in scans {
        let mut sh = vec![Dim::Const(trip)];
        sh.extend(s.shape);
        shapes.push(sh);
    }
    Ok(outs.into_iter().zip(shapes).map(|(val, shape)| Value::Rt(Rt { val, shape })).collect())
}

fn same_shape(a: &[Dim], b: &[Dim]) -> bool {
    a == b
}

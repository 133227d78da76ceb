//! The plan executor, shared by every backend: binds inputs, resolves dim symbols, walks the
//! steps of a graph (recursing into loop bodies) and returns the outputs.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::backend::Backend;
use crate::cpu::Cpu;
use crate::decode::RunState;
use crate::dim::Dim;
use crate::early_exit::ExitTracker;
use crate::error::RuntimeError;
use crate::format::ModelFile;
use crate::plan::{DType, Graph, Op, Step, TensorSig, ABSENT};
use crate::tensor::Tensor;

/// A model loaded on a backend: the manifest plus its weights on the device.
pub struct Model<B: Backend> {
    backend: B,
    file: ModelFile,
    weights: Vec<B::Buf>,
    /// The entry graph's step that makes the logits (a Linear over [batch, seq, d]), when the
    /// model is a language model: a session that needs only the last position's logits runs it
    /// on that position alone (`RunState::last_logits_only`).
    logits_step: Option<usize>,
    /// Constants already on the device, by (graph address, step): a constant inside a loop body
    /// would otherwise be uploaded again every iteration of every run (buffers are never written
    /// after they are produced, so one copy serves all).
    constants: RefCell<HashMap<(usize, usize), B::Buf>>,
    /// Per graph and step, the values whose last reader is that step (graph outputs excluded):
    /// the executor drops them right after it, so a graph's peak memory is its live set, not
    /// every intermediate (a 64 x 1K-token prefill of a 1.3B model holds tens of GB otherwise).
    dead_after: Vec<Vec<Vec<u32>>>,
}

/// The CPU reference backend's model.
pub type CpuModel = Model<Cpu>;

impl CpuModel {
    /// Decodes the weights of an opened model file for the CPU backend.
    pub fn new(file: ModelFile) -> Result<CpuModel, RuntimeError> {
        Model::load(Cpu, file)
    }
}

impl<B: Backend> Model<B> {
    /// Loads a model file onto `backend`.
    pub fn load(backend: B, file: ModelFile) -> Result<Model<B>, RuntimeError> {
        // Loop bodies come after the graph that runs them: no recursion, however the file was made.
        let n = file.manifest.graphs.len();
        for (i, g) in file.manifest.graphs.iter().enumerate() {
            for s in &g.steps {
                if let Some(Op::Loop(l)) = &s.op {
                    if (l.body as usize) <= i || l.body as usize >= n {
                        return Err(RuntimeError::Corrupt(format!("graph `{}` loops over graph #{}, which is not a later graph of the plan", g.name, l.body)));
                    }
                }
            }
        }
        let weights = backend.load_weights(&file)?;
        let logits_step = logits_step(&file.manifest);
        let dead_after = file.manifest.graphs.iter().map(dead_after).collect();
        Ok(Model { backend, file, weights, logits_step, constants: RefCell::new(HashMap::new()), dead_after })
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn file(&self) -> &ModelFile {
        &self.file
    }

    /// Runs the entry graph on named inputs (extra arrays are ignored; see `unused_inputs`);
    /// returns the outputs in signature order.
    pub fn run(&self, inputs: &HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>, RuntimeError> {
        self.run_with(inputs, None)
    }

    /// Runs the entry graph; with `state`, stateful steps read and extend its caches (a decode
    /// session's prefill or decode step).
    pub fn run_with(&self, inputs: &HashMap<String, Tensor>, state: Option<&mut RunState<B::Buf>>) -> Result<Vec<(String, Tensor)>, RuntimeError> {
        let outs = self.run_on_device(inputs, state)?;
        let dev = |e: crate::error::OpError| RuntimeError::Device { device: self.backend.name().into(), reason: e.0 };
        outs.into_iter().map(|(n, b)| Ok((n, self.backend.download(&b).map_err(dev)?))).collect()
    }

    /// Like `run_with`, but leaves the outputs on the device (a session downloads only the
    /// logits rows it needs).
    pub fn run_on_device(&self, inputs: &HashMap<String, Tensor>, state: Option<&mut RunState<B::Buf>>) -> Result<Vec<(String, B::Buf)>, RuntimeError> {
        let m = &self.file.manifest;
        bind_symbols(&m.inputs, inputs)?;
        let dev = |e: crate::error::OpError| RuntimeError::Device { device: self.backend.name().into(), reason: e.0 };
        let args: Vec<B::Buf> = m.inputs.iter().map(|s| self.backend.upload(&inputs[&s.name])).collect::<Result<_, _>>().map_err(dev)?;
        self.run_on_buffers(inputs, args, state)
    }

    /// Like `run_on_device`, with the inputs already on the device (`args`, in signature order)
    /// and `inputs` read only for their shapes: a recorded decode step reads its token ids from
    /// one buffer that every replay overwrites.
    pub fn run_on_buffers(&self, inputs: &HashMap<String, Tensor>, args: Vec<B::Buf>, mut state: Option<&mut RunState<B::Buf>>) -> Result<Vec<(String, B::Buf)>, RuntimeError> {
        let m = &self.file.manifest;
        let env = bind_symbols(&m.inputs, inputs)?;
        let entry = m.graphs.first().ok_or_else(|| RuntimeError::Corrupt("plan has no graphs".into()))?;
        let mut iters = Vec::new();
        let outs = self.run_graph(entry, 0, args, &env, &mut state, &mut iters)?;
        Ok(m.outputs.iter().map(|s| s.name.clone()).zip(outs).collect())
    }

    fn run_graph(&self, g: &Graph, gi: usize, args: Vec<B::Buf>, env: &HashMap<String, i64>, state: &mut Option<&mut RunState<B::Buf>>, iters: &mut Vec<(i64, i64)>) -> Result<Vec<B::Buf>, RuntimeError> {
        let mut vals: Vec<Option<B::Buf>> = vec![None; g.num_values as usize];
        if args.len() != g.inputs.len() {
            return Err(RuntimeError::Corrupt(format!("graph `{}` takes {} inputs, got {}", g.name, g.inputs.len(), args.len())));
        }
        for (&id, a) in g.inputs.iter().zip(args) {
            *slot(&mut vals, id, g)? = Some(a);
        }
        let entry = iters.is_empty() && std::ptr::eq(g, &self.file.manifest.graphs[0]);
        for (si, step) in g.steps.iter().enumerate() {
            let err = |reason: String| RuntimeError::Step { step: si, op: op_name(step), origin: step.origin.clone(), reason };
            let op = step.op.as_ref().ok_or_else(|| err("step has no op (unknown to this runtime?)".into()))?;
            let mut ins: Vec<Option<B::Buf>> = Vec::with_capacity(step.inputs.len());
            for &i in &step.inputs {
                if i == ABSENT {
                    ins.push(None);
                } else {
                    let v = vals.get(i as usize).cloned().flatten().ok_or_else(|| err(format!("input value %{i} is not defined")))?;
                    ins.push(Some(v));
                }
            }
            if entry && Some(si) == self.logits_step && state.as_deref().is_some_and(|s| s.last_logits_only) {
                // Only the last position's logits are wanted: project that position alone.
                if let Some(x) = ins.first_mut().and_then(|x| x.as_mut()) {
                    let len = self.backend.shape(x).get(1).copied().unwrap_or(0) as i64;
                    if len > 1 {
                        let last = Op::Slice(crate::plan::Slice { axes: vec![1], starts: vec![len - 1], ends: vec![len], steps: vec![1] });
                        *x = self.backend.run_op(&last, &[Some(x)], env).map_err(|e| err(e.0))?.remove(0);
                    }
                }
            }
            let outs: Vec<B::Buf> = match op {
                Op::Weight(w) => vec![self.weights.get(w.index as usize).cloned().ok_or_else(|| err(format!("no weight #{}", w.index)))?],
                Op::Constant(c) => {
                    let key = (g as *const Graph as usize, si);
                    let cached = self.constants.borrow().get(&key).cloned();
                    match cached {
                        Some(b) => vec![b],
                        None => {
                            let b = self.backend.upload(&constant_tensor(c).map_err(err)?).map_err(|e| err(e.0))?;
                            self.constants.borrow_mut().insert(key, b.clone());
                            vec![b]
                        }
                    }
                }
                Op::Loop(l) => {
                    let body = self.file.manifest.graphs.get(l.body as usize).ok_or_else(|| err(format!("no graph #{}", l.body)))?;
                    let nc = l.num_carried as usize;
                    let ins: Vec<B::Buf> = ins.into_iter().map(|t| t.ok_or_else(|| err("loop inputs cannot be absent".into()))).collect::<Result<_, _>>()?;
                    if ins.len() < nc {
                        return Err(err(format!("loop carries {nc} values but has {} inputs", ins.len())));
                    }
                    let (mut carried, captured) = (ins[..nc].to_vec(), &ins[nc..]);
                    let n_scan = step.outputs.len().saturating_sub(nc);
                    let mut scans: Vec<Vec<B::Buf>> = vec![Vec::new(); n_scan];
                    let threshold = state.as_deref().map_or(1.0, |s| s.exit_threshold);
                    let gate = l.exit_gate_scan.map(|k| k as usize).filter(|&k| threshold < 1.0 && k < n_scan);
                    let mut exits = gate.map(|_| ExitTracker::new(threshold, nc));
                    let mut last_run = l.trip_count - 1;
                    for it in 0..l.trip_count {
                        let mut a = Vec::with_capacity(1 + ins.len());
                        a.push(self.backend.upload(&Tensor::i64(vec![], vec![it])).map_err(|e| err(e.0))?);
                        a.extend(carried.iter().cloned());
                        a.extend(captured.iter().cloned());
                        iters.push((it, l.trip_count));
                        let r = self.run_graph(body, l.body as usize, a, env, state, iters);
                        iters.pop();
                        let mut outs = r?;
                        if outs.len() != nc + n_scan {
                            return Err(err(format!("loop body returned {} values, expected {nc} carried and {n_scan} scanned", outs.len())));
                        }
                        for (k, s) in outs.drain(nc..).enumerate() {
                            scans[k].push(s);
                        }
                        carried = outs;
                        if let Some(st) = state.as_deref_mut() {
                            st.loop_iterations.run += 1;
                        }
                        if let (Some(x), Some(k)) = (exits.as_mut(), gate) {
                            let lam = scans[k].last().cloned().ok_or_else(|| err("no exit gate value".into()))?;
                            if x.observe(&self.backend, &lam, &carried).map_err(|e| err(e.0))? && it + 1 < l.trip_count {
                                last_run = it;
                                break;
                            }
                        }
                    }
                    if let Some(x) = exits {
                        carried = x.finish(&self.backend, carried).map_err(|e| err(e.0))?;
                        if last_run + 1 < l.trip_count {
                            // Skipped iterations: scan outputs repeat the last loop run.
                            for s in scans.iter_mut() {
                                let fill = s.last().cloned().ok_or_else(|| err("empty scan".into()))?;
                                s.resize(l.trip_count as usize, fill);
                            }
                            if let Some(st) = state.as_deref_mut() {
                                st.loop_iterations.skipped += (l.trip_count - 1 - last_run) as u64;
                                let prefix: Vec<i64> = iters.iter().map(|&(i, _)| i).collect();
                                let chunk = x.chunk_len().unwrap_or(1);
                                crate::decode::copy_to_skipped_iterations(&self.backend, st, &prefix, last_run, l.trip_count, chunk).map_err(|e| err(e.0))?;
                            }
                        }
                    }
                    for s in scans {
                        carried.push(self.backend.stack(&s).map_err(|e| err(e.0))?);
                    }
                    carried
                }
                _ => match state.as_deref_mut() {
                    Some(st) if step.cache_slot != 0 || matches!(op, Op::Range(r) if r.positional) => {
                        crate::decode::run_stateful(&self.backend, op, step, ins, env, st, iters).map_err(|e| err(e.0))?
                    }
                    _ => {
                        let refs: Vec<Option<&B::Buf>> = ins.iter().map(|t| t.as_ref()).collect();
                        self.backend.run_op(op, &refs, env).map_err(|e| err(e.0))?
                    }
                },
            };
            if outs.len() < step.outputs.len() {
                return Err(err(format!("produced {} results, the plan expects {}", outs.len(), step.outputs.len())));
            }
            for (&id, t) in step.outputs.iter().zip(outs) {
                *slot(&mut vals, id, g)? = Some(t);
            }
            for &id in self.dead_after.get(gi).and_then(|d| d.get(si)).map_or(&[][..], |v| &v[..]) {
                *slot(&mut vals, id, g)? = None;
            }
        }
        g.outputs
            .iter()
            .map(|&id| vals.get(id as usize).cloned().flatten().ok_or_else(|| RuntimeError::Corrupt(format!("graph `{}` output %{id} never computed", g.name))))
            .collect()
    }
}

fn slot<'a, T>(vals: &'a mut [Option<T>], id: u32, g: &Graph) -> Result<&'a mut Option<T>, RuntimeError> {
    vals.get_mut(id as usize).ok_or_else(|| RuntimeError::Corrupt(format!("graph `{}` uses value %{id} past its {} values", g.name, g.num_values)))
}

/// The name of a step's op, for messages and `inspect`.
/// For each step of `g`, the values read or made there and never read later nor returned.
fn dead_after(g: &Graph) -> Vec<Vec<u32>> {
    let mut last: HashMap<u32, usize> = HashMap::new();
    for (si, s) in g.steps.iter().enumerate() {
        for &id in s.inputs.iter().filter(|&&i| i != ABSENT) {
            last.insert(id as u32, si);
        }
        for &id in &s.outputs {
            last.insert(id, si);
        }
    }
    for id in &g.outputs {
        last.remove(id);
    }
    let mut dead = vec![Vec::new(); g.steps.len()];
    for (id, si) in last {
        dead[si].push(id);
    }
    dead
}

pub fn op_name(step: &Step) -> String {
    match &step.op {
        None => "unknown".into(),
        Some(op) => {
            let s = format!("{op:?}");
            s.split(['(', ' ']).next().unwrap_or("op").to_string()
        }
    }
}

/// Checks every declared input is present with the declared dtype and rank, binds dim symbols
/// from their shapes, and rejects inconsistent bindings (e.g. two inputs disagreeing on `batch`).
pub fn bind_symbols(sigs: &[TensorSig], inputs: &HashMap<String, Tensor>) -> Result<HashMap<String, i64>, RuntimeError> {
    let mut env = HashMap::new();
    for s in sigs {
        let bad = |reason: String| RuntimeError::BadInput { name: s.name.clone(), reason };
        let t = inputs.get(&s.name).ok_or_else(|| bad("missing from the inputs".into()))?;
        if t.dtype() as i32 != s.dtype {
            return Err(bad(format!("has dtype {:?}, the model expects {:?}", t.dtype(), DType::try_from(s.dtype).unwrap_or(DType::F32))));
        }
        if t.shape.len() != s.dims.len() {
            return Err(bad(format!("has shape {:?}, the model expects rank {} ({})", t.shape, s.dims.len(), s.dims.join(", "))));
        }
        for (d, &n) in s.dims.iter().zip(&t.shape) {
            match Dim::parse(d)? {
                Dim::Const(c) if c != n as i64 => return Err(bad(format!("has shape {:?}, the model expects [{}]", t.shape, s.dims.join(", ")))),
                Dim::Sym(name) => match env.insert(name.clone(), n as i64) {
                    Some(prev) if prev != n as i64 => return Err(bad(format!("sets `{name}` = {n}, but another input set it to {prev}"))),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(env)
}

/// Names in `inputs` that are not inputs of the model (a user may pass an .npz that also holds
/// expected outputs).
pub fn unused_inputs<'a>(sigs: &[TensorSig], inputs: &'a HashMap<String, Tensor>) -> Vec<&'a str> {
    let mut v: Vec<&str> = inputs.keys().filter(|k| !sigs.iter().any(|s| &s.name == *k)).map(String::as_str).collect();
    v.sort_unstable();
    v
}

/// The host tensor of a plan constant.
pub fn constant_tensor(c: &crate::plan::Constant) -> Result<Tensor, String> {
    let shape: Vec<usize> = c.shape.iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    let data = match DType::try_from(c.dtype) {
        Ok(DType::F32) if c.f32s.len() == n => crate::tensor::Data::F32(c.f32s.clone()),
        Ok(DType::Bool) if c.f32s.len() == n => crate::tensor::Data::Bool(c.f32s.iter().map(|&x| x != 0.0).collect()),
        Ok(DType::I64) if c.i64s.len() == n => crate::tensor::Data::I64(c.i64s.clone()),
        _ => return Err(format!("constant of dtype {} does not hold {n} values", c.dtype)),
    };
    Ok(Tensor { shape, data })
}

/// The entry graph's step producing the logits output, when it is a Linear over a rank-3
/// activation (see `Model::logits_step`).
fn logits_step(m: &crate::plan::Manifest) -> Option<usize> {
    let d = m.decode.as_ref()?;
    let k = m.outputs.iter().position(|o| o.name == d.logits_output)?;
    let g = m.graphs.first()?;
    let id = *g.outputs.get(k)?;
    g.steps.iter().position(|s| s.outputs.first() == Some(&id) && matches!(s.op, Some(Op::Linear(_))))
}

//! Explicit attention masks that are the causal mask, or the causal mask of a sliding window,
//! seen as such. torch's export of Hugging Face models builds a bool [B, 1, S, S] mask from
//! position indices (GatherND over (batch, position) pairs, CumSum over positions, compares) and
//! hands it to Attention; decode cannot be derived through a mask whose shape follows the whole
//! sequence. Such a mask depends only on the input shapes, not on any input's values, so the
//! reference (CPU) backend computes it at compile time for given sizes. Where it equals, at every
//! size tried, the causal mask (or that of one sliding window of w tokens: query q sees key k
//! when q - w < k <= q), the attention becomes `causal` (with `window_left` w - 1), aligned
//! bottom-right (the same as top-left when queries and keys have one length, as they do where
//! such a mask applies); the mask input goes, and the steps that made it go with it: prefill
//! skips the S x S index arithmetic and decode derives as for fused causal attention. Attentions
//! in a loop body whose mask the loop captures from the entry graph (a rerolled unrolled export)
//! count too; the capture goes with the mask.
//!
//! Sizes tried: batch 1 and 2 at seq 1..=8, and batch 1 at seq 2C + 3, where C is the largest
//! magnitude of an integer the mask's steps hold (a sliding window or chunk size shows there,
//! and a window w differs from causal at seq w + 1). A mask whose C would need seq >
//! `MAX_CHECK_SEQ` is left as it is.

use std::collections::{HashMap, HashSet};

use lt2_runtime::dim::Dim;
use lt2_runtime::plan::{self, DType, Graph, Manifest, Op};
use lt2_runtime::tensor::{Data, Tensor};

/// Additive mask values at or below this mask the key: fp16 exports fill with -65504 (fp16's
/// lowest), bf16 / fp32 ones with about -3.4e38. With scores in f32, such a key's softmax weight
/// is exp(-6e4 + its score - the row's best), 0 in f32 unless its score beats the best by 6e4.
const MASKED_AT: f32 = -6.0e4;

/// The longest sequence a mask is checked at; masks with larger constants stay explicit. 8195
/// covers 4096-token windows (Mistral 7B v0.1); the check then takes about 12 s and 1.5 GB.
const MAX_CHECK_SEQ: i64 = 8195;

/// An attention step that reads a mask: its graph (0, or a loop body) and step index.
type User = (usize, usize);

/// Rewrites the attentions whose mask is the causal mask (see the module doc); returns one line
/// per mask rewritten, for the user.
pub fn fold_causal_masks(m: &mut Manifest) -> Vec<String> {
    let Some((batch, seq)) = batch_and_seq(m) else { return vec![] };
    let g = &m.graphs[0];
    let producer: HashMap<u32, usize> = g.steps.iter().enumerate().flat_map(|(i, s)| s.outputs.iter().map(move |&o| (o, i))).collect();
    let masks = masks_by_value(m);
    let mut notes = Vec::new();
    let mut folds: Vec<(Vec<User>, Vec<usize>, i64, Band)> = Vec::new();
    for (mask, users) in masks {
        let Some(slice) = pure_slice(g, &producer, mask) else { continue };
        let longest = 2 * largest_constant(g, &slice) + 3;
        let first = &m.graphs[users[0].0].steps[users[0].1].origin;
        if longest > MAX_CHECK_SEQ {
            notes.push(format!("the attention mask of `{first}` stays explicit: checking it would take sequences of {longest} tokens"));
            continue;
        }
        let mut lengths: Vec<i64> = (1..=8).collect();
        if longest > 8 {
            lengths.push(longest);
        }
        // Batch 2 at the short lengths only: the long one costs seq^2 per batch row.
        let bands: Option<Vec<(usize, Band)>> = [1i64, 2]
            .iter()
            .flat_map(|&b| lengths.iter().filter(move |&&l| b == 1 || l <= 8).map(move |&l| (b, l)))
            .map(|(b, l)| {
                let env = HashMap::from([(batch.clone(), b), (seq.clone(), l)]);
                evaluate(g, &slice, mask, &env).and_then(|t| band_of(&t, l as usize)).map(|band| (l as usize, band))
            })
            .collect();
        if let Some(band) = bands.as_deref().and_then(agreed_band) {
            folds.push((users, slice, longest, band));
        }
    }
    let mut slice_steps: HashSet<usize> = HashSet::new();
    for (users, slice, longest, band) in folds {
        let mut names = Vec::new();
        for &(gi, u) in &users {
            let step = &mut m.graphs[gi].steps[u];
            if let Some(Op::Attention(a)) = &mut step.op {
                a.causal = true;
                a.top_left = false;
                if let Band::Window(w) = band {
                    a.window_left = w as i64 - 1;
                }
            }
            step.inputs[3] = plan::ABSENT;
            names.push(format!("`{}`", step.origin));
        }
        names.dedup();
        // A deep model's masks are read by dozens of attentions: name two, count the rest.
        let readers = if names.len() > 3 { format!("{}, {} and {} more attentions", names[0], names[1], names.len() - 2) } else { names.join(", ") };
        notes.push(format!(
            "the attention mask of {} is the {} (computed from shapes only; checked at batch 1 and 2, seq 1..=8{}): decoded as {}",
            readers,
            match band {
                Band::Causal => "causal mask".to_string(),
                Band::Window(w) => format!("causal mask of a {w}-token sliding window"),
            },
            if longest > 8 { format!(", and batch 1, seq {longest}") } else { String::new() },
            match band {
                Band::Causal => "causal attention".to_string(),
                Band::Window(w) => format!("causal attention with window_left {}", w - 1),
            }
        ));
        slice_steps.extend(slice);
    }
    drop_unread_captures(m);
    remove_dead(&mut m.graphs[0], &slice_steps);
    notes
}

/// The masks of attentions without windows, each with its readers: in the entry graph, and in
/// the bodies of its loops where the mask is a value the loop captures from the entry graph.
/// Keyed by the entry graph's value.
fn masks_by_value(m: &Manifest) -> Vec<(u32, Vec<User>)> {
    let mut masks: Vec<(u32, Vec<User>)> = Vec::new();
    let mut add = |v: u32, user: User| match masks.iter_mut().find(|(x, _)| *x == v) {
        Some((_, users)) => users.push(user),
        None => masks.push((v, vec![user])),
    };
    let mask_of = |s: &plan::Step| -> Option<u32> {
        let Some(Op::Attention(a)) = &s.op else { return None };
        let &mask = s.inputs.get(3)?;
        (mask != plan::ABSENT && a.window_left == -1 && a.window_right == -1).then_some(mask as u32)
    };
    for (i, s) in m.graphs[0].steps.iter().enumerate() {
        if let Some(v) = mask_of(s) {
            add(v, (0, i));
        }
        let Some(Op::Loop(l)) = &s.op else { continue };
        let (bi, carried) = (l.body as usize, l.num_carried as usize);
        let Some(body) = m.graphs.get(bi) else { continue };
        for (j, bs) in body.steps.iter().enumerate() {
            let Some(v) = mask_of(bs) else { continue };
            // Body inputs: (iteration, carried..., captured...); the loop step's: (carried..., captured...).
            let Some(p) = body.inputs.iter().position(|&x| x == v) else { continue };
            if p > carried {
                if let Some(&outer) = s.inputs.get(p - 1).filter(|&&x| x != plan::ABSENT) {
                    add(outer as u32, (bi, j));
                }
            }
        }
    }
    masks
}

/// Removes the captured inputs of the entry graph's loops that their bodies no longer read.
fn drop_unread_captures(m: &mut Manifest) {
    for li in 0..m.graphs[0].steps.len() {
        let Some(Op::Loop(l)) = &m.graphs[0].steps[li].op else { continue };
        let (bi, carried) = (l.body as usize, l.num_carried as usize);
        if bi == 0 || bi >= m.graphs.len() {
            continue;
        }
        let body = &m.graphs[bi];
        let read: HashSet<u32> = body.steps.iter().flat_map(|s| s.inputs.iter().filter(|&&x| x != plan::ABSENT).map(|&x| x as u32)).chain(body.outputs.iter().copied()).collect();
        let unread: Vec<usize> = (carried + 1..body.inputs.len()).filter(|&p| !read.contains(&body.inputs[p])).collect();
        for &p in unread.iter().rev() {
            m.graphs[bi].inputs.remove(p);
            m.graphs[0].steps[li].inputs.remove(p - 1);
        }
    }
}

/// The symbols of the token-ids input [batch, seq], when the entry graph's inputs use no others.
fn batch_and_seq(m: &Manifest) -> Option<(String, String)> {
    let ids = m.inputs.iter().find(|s| s.dtype == DType::I64 as i32 && s.dims.len() == 2)?;
    let sym = |d: &str| match Dim::parse(d) {
        Ok(Dim::Sym(s)) => Some(s),
        _ => None,
    };
    let (b, s) = (sym(&ids.dims[0])?, sym(&ids.dims[1])?);
    let only_these = m.inputs.iter().flat_map(|i| i.dims.iter()).all(|d| Dim::parse(d).is_ok_and(|d| d.as_const().is_some() || d == Dim::Sym(b.clone()) || d == Dim::Sym(s.clone())));
    (only_these && b != s).then_some((b, s))
}

/// The steps that compute `v`, when none reads a graph input, a weight, a cache or a loop.
fn pure_slice(g: &Graph, producer: &HashMap<u32, usize>, v: u32) -> Option<Vec<usize>> {
    let mut seen = HashSet::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        let &i = producer.get(&v)?; // a graph input
        if !seen.insert(i) {
            continue;
        }
        let s = &g.steps[i];
        if s.cache_slot != 0 || matches!(s.op, None | Some(Op::Weight(_)) | Some(Op::Loop(_))) {
            return None;
        }
        stack.extend(s.inputs.iter().filter(|&&x| x != plan::ABSENT).map(|&x| x as u32));
    }
    let mut steps: Vec<usize> = seen.into_iter().collect();
    steps.sort_unstable();
    Some(steps)
}

/// The largest magnitude of an integer the steps hold (constants, ranges, slice bounds short of
/// "to the end", integers in dim expressions).
fn largest_constant(g: &Graph, steps: &[usize]) -> i64 {
    let literals = |s: &str| -> Vec<i64> { s.split(|c: char| !c.is_ascii_digit()).filter_map(|t| t.parse().ok()).collect() };
    let mut c = 1i64;
    for &i in steps {
        let vals: Vec<i64> = match &g.steps[i].op {
            // Float constants at or beyond MASKED_AT are mask fills (fp16's lowest, -65504), not sizes.
            Some(Op::Constant(k)) => k.i64s.iter().copied().chain(k.f32s.iter().filter(|x| x.fract() == 0.0 && x.abs() < -MASKED_AT).map(|&x| x as i64)).collect(),
            Some(Op::Range(r)) => [r.start, r.delta].into_iter().chain(literals(&r.size)).collect(),
            Some(Op::Slice(s)) => s.starts.iter().chain(&s.ends).chain(&s.steps).copied().collect(),
            Some(Op::Trilu(t)) => vec![t.k],
            Some(Op::DimValues(d)) => d.dims.iter().flat_map(|s| literals(s)).collect(),
            _ => vec![],
        };
        for v in vals {
            if v.unsigned_abs() < 1 << 31 {
                c = c.max(v.abs());
            }
        }
    }
    c
}

/// Runs the slice's steps in order on the CPU backend and returns value `v`.
fn evaluate(g: &Graph, slice: &[usize], v: u32, env: &HashMap<String, i64>) -> Option<Tensor> {
    let mut vals: HashMap<u32, Tensor> = HashMap::new();
    for &i in slice {
        let s = &g.steps[i];
        let op = s.op.as_ref()?;
        let outs = match op {
            Op::Constant(c) => vec![lt2_runtime::exec::constant_tensor(c).ok()?],
            _ => {
                let inputs: Vec<Option<&Tensor>> = s.inputs.iter().map(|&x| if x == plan::ABSENT { None } else { vals.get(&(x as u32)) }).collect();
                if s.inputs.iter().zip(&inputs).any(|(&x, t)| x != plan::ABSENT && t.is_none()) {
                    return None;
                }
                lt2_runtime::cpu::run_op(op, &inputs, env).ok()?
            }
        };
        for (&o, t) in s.outputs.iter().zip(outs) {
            vals.insert(o, t);
        }
    }
    vals.remove(&v)
}

/// Which keys a mask lets each query see: all earlier ones (`Causal`), or the last w of them,
/// itself included (`Window(w)`, HF's sliding window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Band {
    Causal,
    Window(usize),
}

/// The band `t` (bool, or f32 added to the scores) is for queries and keys of length `l`, in
/// every leading index; None for any other mask. A window at least `l` wide is `Causal` here.
fn band_of(t: &Tensor, l: usize) -> Option<Band> {
    let r = t.shape.len();
    if r < 2 || t.shape[r - 2] != l || t.shape[r - 1] != l {
        return None;
    }
    let seen: Vec<Option<bool>> = match &t.data {
        Data::Bool(v) => v.iter().map(|&x| Some(x)).collect(),
        Data::F32(v) => v.iter().map(|&x| if x == 0.0 { Some(true) } else if x <= MASKED_AT { Some(false) } else { None }).collect(),
        Data::I64(_) => return None,
    };
    // The last row sees the most keys the band has room for: its width is the window.
    let w = seen[(l - 1) * l..l * l].iter().filter(|&&x| x == Some(true)).count().max(1);
    let allowed = |i: usize| {
        let (q, k) = ((i / l) % l, i % l);
        k <= q && q - k < w
    };
    seen.iter().enumerate().all(|(i, &x)| x == Some(allowed(i))).then_some(if w >= l { Band::Causal } else { Band::Window(w) })
}

/// The one band all of `bands` (with their lengths) agree on: a window must be the same
/// wherever it shows, and no shorter than a length at which the mask looked causal.
fn agreed_band(bands: &[(usize, Band)]) -> Option<Band> {
    let mut windows = bands.iter().filter_map(|&(_, b)| if let Band::Window(w) = b { Some(w) } else { None });
    let Some(w) = windows.next() else { return Some(Band::Causal) };
    (windows.all(|x| x == w) && bands.iter().all(|&(l, b)| b != Band::Causal || l <= w)).then_some(Band::Window(w))
}

/// Drops the steps of `candidates` whose outputs nothing reads any more.
fn remove_dead(g: &mut Graph, candidates: &HashSet<usize>) {
    if candidates.is_empty() {
        return;
    }
    let mut live: HashSet<u32> = g.outputs.iter().copied().collect();
    let mut keep = vec![true; g.steps.len()];
    for (i, s) in g.steps.iter().enumerate().rev() {
        if candidates.contains(&i) && !s.outputs.iter().any(|o| live.contains(o)) {
            keep[i] = false;
            continue;
        }
        live.extend(s.inputs.iter().filter(|&&x| x != plan::ABSENT).map(|&x| x as u32));
    }
    let mut i = 0;
    g.steps.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_of_bool_and_additive_masks() {
        let l = 3;
        let tri: Vec<bool> = (0..9).map(|i| i % 3 <= i / 3).collect();
        assert_eq!(band_of(&Tensor { shape: vec![2, 1, l, l], data: Data::Bool([tri.clone(), tri.clone()].concat()) }, l), Some(Band::Causal));
        let mut off = tri.clone();
        off[1] = true; // query 0 sees key 1
        assert_eq!(band_of(&Tensor { shape: vec![1, l, l], data: Data::Bool(off) }, l), None);
        let add: Vec<f32> = tri.iter().map(|&a| if a { 0.0 } else { f32::MIN }).collect();
        assert_eq!(band_of(&Tensor { shape: vec![l, l], data: Data::F32(add) }, l), Some(Band::Causal));
        // fp16 exports fill with fp16's lowest.
        let add16: Vec<f32> = tri.iter().map(|&a| if a { 0.0 } else { -65504.0 }).collect();
        assert_eq!(band_of(&Tensor { shape: vec![l, l], data: Data::F32(add16) }, l), Some(Band::Causal));
        let weak: Vec<f32> = tri.iter().map(|&a| if a { 0.0 } else { -100.0 }).collect();
        assert_eq!(band_of(&Tensor { shape: vec![l, l], data: Data::F32(weak) }, l), None);
        assert_eq!(band_of(&Tensor { shape: vec![1, 1, 2, 3], data: Data::Bool(vec![true; 6]) }, l), None);
        // A 2-token window over 4 positions: each query sees itself and the one before.
        let win: Vec<bool> = (0..16).map(|i| i % 4 <= i / 4 && i / 4 - i % 4 < 2).collect();
        assert_eq!(band_of(&Tensor { shape: vec![4, 4], data: Data::Bool(win.clone()) }, 4), Some(Band::Window(2)));
        let mut holes = win;
        holes[0] = false; // query 0 sees nothing: no band
        assert_eq!(band_of(&Tensor { shape: vec![4, 4], data: Data::Bool(holes) }, 4), None);
    }

    #[test]
    fn bands_must_agree_across_lengths() {
        use Band::*;
        assert_eq!(agreed_band(&[(1, Causal), (5, Causal)]), Some(Causal));
        assert_eq!(agreed_band(&[(2, Causal), (3, Causal), (9, Window(3))]), Some(Window(3)));
        // Causal at 5 contradicts a 3-token window.
        assert_eq!(agreed_band(&[(5, Causal), (9, Window(3))]), None);
        assert_eq!(agreed_band(&[(7, Window(4)), (9, Window(3))]), None);
    }
}

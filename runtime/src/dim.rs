//! Dim expressions: tensor dimensions that are numbers, symbols bound when a model runs
//! (`batch`, `seq`), or integer arithmetic over them (`batch*seq`, `seq/2+1`). The compiler
//! computes them symbolically from ONNX shape arithmetic; the runtime evaluates them once the
//! inputs' shapes bind the symbols.

use std::collections::HashMap;
use std::fmt;

/// A dimension as an expression tree, kept in a simplified form (constants folded,
/// `x*1`, `x+0` removed) so that equal dims usually print equally.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Const(i64),
    Sym(String),
    Add(Box<Dim>, Box<Dim>),
    Sub(Box<Dim>, Box<Dim>),
    Mul(Box<Dim>, Box<Dim>),
    /// Floor division.
    Div(Box<Dim>, Box<Dim>),
    /// The smaller of two (ONNX Min over shape values, e.g. `min(2048, seq)` for top-k).
    Min(Box<Dim>, Box<Dim>),
    /// The larger of two.
    Max(Box<Dim>, Box<Dim>),
}

/// Why a dim expression could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DimError {
    #[error("cannot parse dim expression {0:?}")]
    Parse(String),
    #[error("dim symbol `{0}` is not bound by any input shape")]
    Unbound(String),
    #[error("dim expression `{0}` divides by zero")]
    DivZero(String),
}

impl Dim {
    /// A symbol; names are identifiers (letters, digits, `_`, `.`, `:`), not starting with a digit.
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(name.to_string())
    }

    /// The constant value, if the expression has no symbols.
    pub fn as_const(&self) -> Option<i64> {
        match self {
            Dim::Const(c) => Some(*c),
            _ => None,
        }
    }

    pub fn add(a: Dim, b: Dim) -> Dim {
        match (&a, &b) {
            (Dim::Const(x), Dim::Const(y)) => Dim::Const(x + y),
            (_, Dim::Const(0)) => a,
            (Dim::Const(0), _) => b,
            // Constants go right, and meet the constant of `x + c` / `x - c` there.
            (Dim::Const(_), _) => Dim::add(b, a),
            (Dim::Add(x, c1), Dim::Const(c2)) if c1.as_const().is_some() => Dim::add((**x).clone(), Dim::Const(c1.as_const().unwrap_or(0) + c2)),
            (Dim::Sub(x, c1), Dim::Const(c2)) if c1.as_const().is_some() => Dim::sub((**x).clone(), Dim::Const(c1.as_const().unwrap_or(0) - c2)),
            (_, Dim::Const(c)) if *c < 0 => Dim::Sub(Box::new(a), Box::new(Dim::Const(-c))),
            _ => Dim::Add(Box::new(a), Box::new(b)),
        }
    }
    pub fn sub(a: Dim, b: Dim) -> Dim {
        match (&a, &b) {
            (Dim::Const(x), Dim::Const(y)) => Dim::Const(x - y),
            (_, Dim::Const(0)) => a,
            _ if a == b => Dim::Const(0),
            // (x + c) - c = x: exporters write `Sub(Add(seq, 1), 1)` style arithmetic.
            (Dim::Add(x, y), _) if **y == b => (**x).clone(),
            (Dim::Add(x, y), _) if **x == b => (**y).clone(),
            (_, Dim::Const(c)) if *c < 0 => Dim::add(a, Dim::Const(-c)),
            // x - c with x = y + c1 or y - c1 (constants are kept right by `add`).
            (Dim::Add(..) | Dim::Sub(..), Dim::Const(c)) => match &a {
                Dim::Add(y, c1) if c1.as_const().is_some() => Dim::add((**y).clone(), Dim::Const(c1.as_const().unwrap_or(0) - c)),
                Dim::Sub(y, c1) if c1.as_const().is_some() => Dim::sub((**y).clone(), Dim::Const(c1.as_const().unwrap_or(0) + c)),
                _ => Dim::Sub(Box::new(a), Box::new(b)),
            },
            _ => Dim::Sub(Box::new(a), Box::new(b)),
        }
    }
    pub fn mul(a: Dim, b: Dim) -> Dim {
        match (&a, &b) {
            (Dim::Const(x), Dim::Const(y)) => Dim::Const(x * y),
            (_, Dim::Const(1)) => a,
            (Dim::Const(1), _) => b,
            (_, Dim::Const(0)) | (Dim::Const(0), _) => Dim::Const(0),
            _ => Dim::Mul(Box::new(a), Box::new(b)),
        }
    }
    pub fn div(a: Dim, b: Dim) -> Dim {
        match (&a, &b) {
            (Dim::Const(x), Dim::Const(y)) if *y != 0 => Dim::Const(x.div_euclid(*y)),
            (_, Dim::Const(1)) => a,
            _ if a == b => Dim::Const(1),
            // (x * c) / c = x
            (Dim::Mul(x, y), _) if **y == b => (**x).clone(),
            (Dim::Mul(x, y), _) if **x == b => (**y).clone(),
            _ => Dim::Div(Box::new(a), Box::new(b)),
        }
    }

    pub fn min(a: Dim, b: Dim) -> Dim {
        match (&a, &b) {
            (Dim::Const(x), Dim::Const(y)) => Dim::Const(*x.min(y)),
            _ if a == b => a,
            _ => Dim::Min(Box::new(a), Box::new(b)),
        }
    }
    pub fn max(a: Dim, b: Dim) -> Dim {
        match (&a, &b) {
            (Dim::Const(x), Dim::Const(y)) => Dim::Const(*x.max(y)),
            _ if a == b => a,
            _ => Dim::Max(Box::new(a), Box::new(b)),
        }
    }

    /// Evaluates with the symbols bound in `env`.
    pub fn eval(&self, env: &HashMap<String, i64>) -> Result<i64, DimError> {
        Ok(match self {
            Dim::Const(c) => *c,
            Dim::Sym(s) => *env.get(s).ok_or_else(|| DimError::Unbound(s.clone()))?,
            Dim::Add(a, b) => a.eval(env)? + b.eval(env)?,
            Dim::Sub(a, b) => a.eval(env)? - b.eval(env)?,
            Dim::Mul(a, b) => a.eval(env)? * b.eval(env)?,
            Dim::Div(a, b) => {
                let d = b.eval(env)?;
                if d == 0 {
                    return Err(DimError::DivZero(self.to_string()));
                }
                a.eval(env)?.div_euclid(d)
            }
            Dim::Min(a, b) => a.eval(env)?.min(b.eval(env)?),
            Dim::Max(a, b) => a.eval(env)?.max(b.eval(env)?),
        })
    }

    /// Parses the syntax `Display` prints: integers, symbols, `+ - * /`, parentheses.
    pub fn parse(s: &str) -> Result<Dim, DimError> {
        let toks = tokenize(s).ok_or_else(|| DimError::Parse(s.to_string()))?;
        let mut p = Parser { toks: &toks, pos: 0 };
        let d = p.expr().ok_or_else(|| DimError::Parse(s.to_string()))?;
        if p.pos != toks.len() {
            return Err(DimError::Parse(s.to_string()));
        }
        Ok(d)
    }

    fn prec(&self) -> u8 {
        match self {
            Dim::Const(_) | Dim::Sym(_) | Dim::Min(..) | Dim::Max(..) => 3,
            Dim::Mul(..) | Dim::Div(..) => 2,
            Dim::Add(..) | Dim::Sub(..) => 1,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paren = |f: &mut fmt::Formatter<'_>, d: &Dim, min: u8| {
            if d.prec() < min {
                write!(f, "({d})")
            } else {
                write!(f, "{d}")
            }
        };
        match self {
            Dim::Const(c) => write!(f, "{c}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Min(a, b) => write!(f, "min({a},{b})"),
            Dim::Max(a, b) => write!(f, "max({a},{b})"),
            Dim::Add(a, b) | Dim::Sub(a, b) | Dim::Mul(a, b) | Dim::Div(a, b) => {
                let (op, p) = match self {
                    Dim::Add(..) => ("+", 1),
                    Dim::Sub(..) => ("-", 1),
                    Dim::Mul(..) => ("*", 2),
                    _ => ("/", 2),
                };
                paren(f, a, p)?;
                write!(f, "{op}")?;
                // right operand of - and / binds tighter
                paren(f, b, if matches!(self, Dim::Sub(..) | Dim::Div(..)) { p + 1 } else { p })
            }
        }
    }
}

impl From<i64> for Dim {
    fn from(c: i64) -> Dim {
        Dim::Const(c)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(i64),
    Ident(String),
    Op(char),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let st = i;
            while i < cs.len() && cs[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Tok::Num(cs[st..i].iter().collect::<String>().parse().ok()?));
        } else if c.is_alphabetic() || c == '_' {
            let st = i;
            while i < cs.len() && (cs[i].is_alphanumeric() || matches!(cs[i], '_' | '.' | ':')) {
                i += 1;
            }
            out.push(Tok::Ident(cs[st..i].iter().collect()));
        } else if "+-*/(),".contains(c) {
            out.push(Tok::Op(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
}

impl Parser<'_> {
    fn peek_op(&self) -> Option<char> {
        match self.toks.get(self.pos) {
            Some(Tok::Op(c)) => Some(*c),
            _ => None,
        }
    }
    fn expr(&mut self) -> Option<Dim> {
        let mut a = self.term()?;
        while let Some(c @ ('+' | '-')) = self.peek_op() {
            self.pos += 1;
            let b = self.term()?;
            a = if c == '+' { Dim::add(a, b) } else { Dim::sub(a, b) };
        }
        Some(a)
    }
    fn term(&mut self) -> Option<Dim> {
        let mut a = self.atom()?;
        while let Some(c @ ('*' | '/')) = self.peek_op() {
            self.pos += 1;
            let b = self.atom()?;
            a = if c == '*' { Dim::mul(a, b) } else { Dim::div(a, b) };
        }
        Some(a)
    }
    fn atom(&mut self) -> Option<Dim> {
        let t = self.toks.get(self.pos)?.clone();
        self.pos += 1;
        match t {
            Tok::Num(n) => Some(Dim::Const(n)),
            Tok::Ident(s) if (s == "min" || s == "max") && self.peek_op() == Some('(') => {
                self.pos += 1;
                let a = self.expr()?;
                if !matches!(self.toks.get(self.pos), Some(Tok::Op(','))) {
                    return None;
                }
                self.pos += 1;
                let b = self.expr()?;
                if self.peek_op() != Some(')') {
                    return None;
                }
                self.pos += 1;
                Some(if s == "min" { Dim::min(a, b) } else { Dim::max(a, b) })
            }
            Tok::Ident(s) => Some(Dim::Sym(s)),
            Tok::Op('-') => Some(Dim::sub(Dim::Const(0), self.atom()?)),
            Tok::Op('(') => {
                let e = self.expr()?;
                if self.peek_op() != Some(')') {
                    return None;
                }
                self.pos += 1;
                Some(e)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_parse_round_trip() {
        for s in ["batch", "batch*seq", "seq/2+1", "(a+b)*c", "a-(b-c)", "a/(b*c)", "12", "min(4,seq)", "max(seq-1,0)*2"] {
            let d = Dim::parse(s).unwrap();
            assert_eq!(d.to_string(), s, "{s}");
            assert_eq!(Dim::parse(&d.to_string()).unwrap(), d);
        }
    }

    #[test]
    fn eval_binds_symbols() {
        let env: HashMap<String, i64> = [("batch".into(), 3), ("seq".into(), 7)].into();
        assert_eq!(Dim::parse("batch*seq-1").unwrap().eval(&env).unwrap(), 20);
        assert_eq!(Dim::parse("seq/2").unwrap().eval(&env).unwrap(), 3);
        assert_eq!(Dim::parse("min(4,seq)").unwrap().eval(&env).unwrap(), 4);
        assert_eq!(Dim::parse("min(9,seq)").unwrap().eval(&env).unwrap(), 7);
        assert_eq!(Dim::parse("n").unwrap().eval(&env), Err(DimError::Unbound("n".into())));
        assert!(Dim::parse("seq/(batch-3)").unwrap().eval(&env).is_err());
    }

    #[test]
    fn simplifies_the_forms_exporters_emit() {
        let s = Dim::sym("seq");
        assert_eq!(Dim::sub(Dim::add(s.clone(), 1.into()), 1.into()), s);
        assert_eq!(Dim::div(Dim::mul(s.clone(), 4.into()), 4.into()), s);
        assert_eq!(Dim::mul(s.clone(), 1.into()), s);
        // torch.export writes the constant first: (1 + seq) - 1.
        assert_eq!(Dim::sub(Dim::add(1.into(), s.clone()), 1.into()), s);
        assert_eq!(Dim::add(Dim::add(s.clone(), 2.into()), 3.into()).to_string(), "seq+5");
        assert_eq!(Dim::sub(Dim::add(s.clone(), 2.into()), 3.into()).to_string(), "seq-1");
        assert_eq!(Dim::add(Dim::sub(s.clone(), 2.into()), 5.into()).to_string(), "seq+3");
        assert_eq!(Dim::add(Dim::sub(s.clone(), 5.into()), 2.into()).to_string(), "seq-3");
        assert_eq!(Dim::sub(Dim::sub(s.clone(), 2.into()), 3.into()).to_string(), "seq-5");
        assert_eq!(Dim::sub(s.clone(), Dim::Const(-2)).to_string(), "seq+2");
        assert_eq!(Dim::add(Dim::sub(s.clone(), 2.into()), 2.into()), s);
        assert!(Dim::parse("a +").is_err());
        assert!(Dim::parse("a $ b").is_err());
    }
}

//! Python-flavoured operations on JSON values: truthiness, equality,
//! ordering and arithmetic.
//!
//! Everything here works on borrowed [`View`]s so that comparisons of
//! context values never clone them.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::ast::{ArithOp, CmpOp};

/// Deepest list/object nesting that equality and ordering will descend into.
/// Values from the scope can be built programmatically to any depth.
const MAX_VALUE_DEPTH: usize = 256;

/// A borrowed JSON value, with objects that came from a bare
/// [`Map`](serde_json::Map) binding treated the same as `Value::Object`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum View<'a> {
    Null,
    Bool(bool),
    Number(&'a Number),
    String(&'a str),
    List(&'a [Value]),
    Object(&'a Map<String, Value>),
}

impl<'a> View<'a> {
    pub(crate) fn of(value: &'a Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Number(n),
            Value::String(s) => Self::String(s),
            Value::Array(items) => Self::List(items),
            Value::Object(map) => Self::Object(map),
        }
    }

    /// Type name used in error messages.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "bool",
            Self::Number(n) if n.is_f64() => "float",
            Self::Number(_) => "int",
            Self::String(_) => "string",
            Self::List(_) => "list",
            Self::Object(_) => "object",
        }
    }

    pub(crate) fn truthy(self) -> bool {
        match self {
            Self::Null => false,
            Self::Bool(b) => b,
            Self::Number(_) => match Num::of(self) {
                Some(Num::Int(i)) => i != 0,
                Some(Num::Float(f)) => f != 0.0,
                None => true,
            },
            Self::String(s) => !s.is_empty(),
            Self::List(items) => !items.is_empty(),
            Self::Object(map) => !map.is_empty(),
        }
    }

    /// The value as a list or string index; bools count, as in Python.
    pub(crate) fn as_index(self) -> Option<i128> {
        match self {
            Self::Bool(_) | Self::Number(_) => match Num::of(self)? {
                Num::Int(i) => Some(i),
                Num::Float(_) => None,
            },
            _ => None,
        }
    }
}

/// A number widened so that every JSON integer (`i64` or `u64`) fits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    /// Numeric value of numbers and bools (Python's `bool` is an `int`).
    pub(crate) fn of(view: View<'_>) -> Option<Self> {
        match view {
            View::Bool(b) => Some(Self::Int(i128::from(b))),
            View::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Some(Self::Int(i128::from(i)))
                } else if let Some(u) = n.as_u64() {
                    Some(Self::Int(i128::from(u)))
                } else {
                    n.as_f64().map(Self::Float)
                }
            }
            _ => None,
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            // Exact for |i| <= 2^53; beyond that Python rounds the same way.
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }

    fn compare(self, other: Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(&b)),
            (Self::Float(a), Self::Float(b)) => a.partial_cmp(&b),
            (Self::Int(a), Self::Float(b)) => int_float_cmp(a, b),
            (Self::Float(a), Self::Int(b)) => int_float_cmp(b, a).map(Ordering::reverse),
        }
    }
}

/// Exact comparison of an integer with a float, like Python's, so that
/// `2**53 + 1 == 2.0**53` is false rather than rounding the integer.
fn int_float_cmp(int: i128, float: f64) -> Option<Ordering> {
    if float.is_nan() {
        return None;
    }
    const LIMIT: f64 = 1.7e38; // below i128::MAX, above every JSON integer
    if float >= LIMIT {
        return Some(Ordering::Less);
    }
    if float <= -LIMIT {
        return Some(Ordering::Greater);
    }
    let whole = float.trunc();
    // In range by the checks above, so the cast is exact.
    let whole_int = whole as i128;
    match int.cmp(&whole_int) {
        Ordering::Equal => (0.0).partial_cmp(&(float - whole)),
        unequal => Some(unequal),
    }
}

/// Raised when values nest deeper than [`MAX_VALUE_DEPTH`].
pub(crate) const TOO_DEEP: &str = "values are nested too deeply to compare";

/// Python `==`: numbers (and bools) numerically, containers structurally,
/// different kinds unequal.
pub(crate) fn equal(a: View<'_>, b: View<'_>, depth: usize) -> Result<bool, &'static str> {
    if depth > MAX_VALUE_DEPTH {
        return Err(TOO_DEEP);
    }
    Ok(match (a, b) {
        (View::String(x), View::String(y)) => x == y,
        (View::Null, View::Null) => true,
        (View::List(x), View::List(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (p, q) in x.iter().zip(y) {
                if !equal(View::of(p), View::of(q), depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        (View::Object(x), View::Object(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (key, p) in x {
                let Some(q) = y.get(key) else {
                    return Ok(false);
                };
                if !equal(View::of(p), View::of(q), depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        _ => match (Num::of(a), Num::of(b)) {
            (Some(x), Some(y)) => x.compare(y) == Some(Ordering::Equal),
            _ => false,
        },
    })
}

fn holds(op: CmpOp, ordering: Option<Ordering>) -> bool {
    let Some(ordering) = ordering else {
        return op == CmpOp::Ne;
    };
    match op {
        CmpOp::Eq => ordering.is_eq(),
        CmpOp::Ne => ordering.is_ne(),
        CmpOp::Lt => ordering.is_lt(),
        CmpOp::Le => ordering.is_le(),
        CmpOp::Gt => ordering.is_gt(),
        CmpOp::Ge => ordering.is_ge(),
    }
}

/// Applies one comparison operator with Python's rules.
pub(crate) fn compare(op: CmpOp, a: View<'_>, b: View<'_>) -> Result<bool, String> {
    compare_at(op, a, b, 0)
}

fn compare_at(op: CmpOp, a: View<'_>, b: View<'_>, depth: usize) -> Result<bool, String> {
    match op {
        CmpOp::Eq => return equal(a, b, depth).map_err(str::to_owned),
        CmpOp::Ne => return equal(a, b, depth).map(|e| !e).map_err(str::to_owned),
        _ => {}
    }
    if depth > MAX_VALUE_DEPTH {
        return Err(TOO_DEEP.to_owned());
    }
    if let (Some(x), Some(y)) = (Num::of(a), Num::of(b)) {
        return Ok(holds(op, x.compare(y)));
    }
    match (a, b) {
        (View::String(x), View::String(y)) => Ok(holds(op, Some(x.cmp(y)))),
        (View::List(x), View::List(y)) => {
            // Python: the first unequal pair decides; otherwise the lengths.
            for (p, q) in x.iter().zip(y) {
                let (p, q) = (View::of(p), View::of(q));
                if !equal(p, q, depth + 1).map_err(str::to_owned)? {
                    return compare_at(op, p, q, depth + 1);
                }
            }
            Ok(holds(op, Some(x.len().cmp(&y.len()))))
        }
        _ => Err(format!(
            "`{}` cannot compare {} with {}",
            op.symbol(),
            a.kind(),
            b.kind()
        )),
    }
}

fn int_value(i: i128) -> Result<Value, String> {
    if let Ok(small) = i64::try_from(i) {
        Ok(Value::from(small))
    } else if let Ok(big) = u64::try_from(i) {
        Ok(Value::from(big))
    } else {
        Err("integer overflow".to_owned())
    }
}

fn float_value(f: f64) -> Result<Value, String> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| "float overflow".to_owned())
}

/// Applies a binary arithmetic operator with Python's numeric tower
/// (bool < int < float), plus string and list concatenation for `+`.
pub(crate) fn arith(op: ArithOp, a: View<'_>, b: View<'_>) -> Result<Value, String> {
    if let (Some(x), Some(y)) = (Num::of(a), Num::of(b)) {
        return numeric(op, x, y);
    }
    match (op, a, b) {
        (ArithOp::Add, View::String(x), View::String(y)) => {
            let mut joined = String::with_capacity(x.len() + y.len());
            joined.push_str(x);
            joined.push_str(y);
            Ok(Value::String(joined))
        }
        (ArithOp::Add, View::List(x), View::List(y)) => {
            Ok(Value::Array(x.iter().chain(y).cloned().collect()))
        }
        _ => Err(format!(
            "unsupported operand types for `{}`: {} and {}",
            op.symbol(),
            a.kind(),
            b.kind()
        )),
    }
}

fn numeric(op: ArithOp, x: Num, y: Num) -> Result<Value, String> {
    if op == ArithOp::Div {
        let divisor = y.as_f64();
        if divisor == 0.0 {
            return Err("division by zero".to_owned());
        }
        return float_value(x.as_f64() / divisor);
    }
    match (x, y) {
        (Num::Int(a), Num::Int(b)) => {
            let result = match op {
                ArithOp::Add => a.checked_add(b),
                ArithOp::Sub => a.checked_sub(b),
                _ => a.checked_mul(b),
            };
            result.map_or_else(|| Err("integer overflow".to_owned()), int_value)
        }
        _ => {
            let (a, b) = (x.as_f64(), y.as_f64());
            float_value(match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
                _ => a * b,
            })
        }
    }
}

/// Unary minus; bools negate as the ints 0 and 1.
pub(crate) fn negate(a: View<'_>) -> Result<Value, String> {
    match Num::of(a) {
        Some(Num::Int(i)) => i
            .checked_neg()
            .map_or_else(|| Err("integer overflow".to_owned()), int_value),
        Some(Num::Float(f)) => float_value(-f),
        None => Err(format!("bad operand type for unary `-`: {}", a.kind())),
    }
}

/// Resolves a Python-style (possibly negative) index against a length.
pub(crate) fn resolve_index(index: i128, len: usize) -> Option<usize> {
    let len = i128::try_from(len).ok()?;
    let resolved = if index < 0 { index + len } else { index };
    if (0..len).contains(&resolved) {
        usize::try_from(resolved).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_float_comparison_is_exact() {
        let big = 1_i128 << 53;
        assert_eq!(
            int_float_cmp(big + 1, 9_007_199_254_740_992.0),
            Some(Ordering::Greater)
        );
        assert_eq!(
            int_float_cmp(big, 9_007_199_254_740_992.0),
            Some(Ordering::Equal)
        );
        assert_eq!(int_float_cmp(2, 2.5), Some(Ordering::Less));
        assert_eq!(int_float_cmp(-2, -2.5), Some(Ordering::Greater));
        assert_eq!(
            int_float_cmp(i128::from(u64::MAX), 1e300),
            Some(Ordering::Less)
        );
        assert_eq!(
            int_float_cmp(i128::from(i64::MIN), -1e300),
            Some(Ordering::Greater)
        );
        assert_eq!(int_float_cmp(0, f64::NAN), None);
    }

    #[test]
    fn python_indexes() {
        assert_eq!(resolve_index(0, 3), Some(0));
        assert_eq!(resolve_index(-1, 3), Some(2));
        assert_eq!(resolve_index(-3, 3), Some(0));
        assert_eq!(resolve_index(-4, 3), None);
        assert_eq!(resolve_index(3, 3), None);
        assert_eq!(resolve_index(0, 0), None);
        assert_eq!(resolve_index(i128::from(u64::MAX), 3), None);
    }

    #[test]
    fn nan_compares_like_python() {
        assert_eq!(Num::Float(f64::NAN).compare(Num::Int(1)), None);
        assert_eq!(Num::Int(1).compare(Num::Float(f64::NAN)), None);
        assert!(holds(CmpOp::Ne, None));
        assert!(!holds(CmpOp::Eq, None));
        assert!(!holds(CmpOp::Le, None));
    }
}

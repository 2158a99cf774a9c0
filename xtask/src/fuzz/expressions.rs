//! Random Jinja expressions and conditions of a known type, over variables of known types.
//!
//! The types steer the generator towards machines that run: most expressions are well typed,
//! and the ones that are not (a division by a variable that is zero, `max` of an empty list)
//! fail on both sides, which is compared too. What each side is documented to do differently
//! is avoided here where the difference would change the control flow (a boolean rendered
//! into the context is `"True"` in the reference, and that string is truthy even when false),
//! and left to the comparison's rules where it only changes a value.

use super::rng::Rng;

/// The type of a generated value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    Int,
    Float,
    Str,
    Bool,
    IntList,
    StrList,
}

impl Ty {
    pub(super) const ALL: [Ty; 6] = [
        Ty::Int,
        Ty::Float,
        Ty::Str,
        Ty::Bool,
        Ty::IntList,
        Ty::StrList,
    ];

    /// A type that renders into a context without changing meaning (no booleans).
    pub(super) const RENDERABLE: [Ty; 5] = [Ty::Int, Ty::Float, Ty::Str, Ty::IntList, Ty::StrList];
}

/// The variables an expression may read: their Jinja path and type.
#[derive(Clone, Debug, Default)]
pub(super) struct Scope {
    pub(super) vars: Vec<(String, Ty)>,
}

impl Scope {
    pub(super) fn of(&self, ty: Ty) -> Vec<&str> {
        self.vars
            .iter()
            .filter(|(_, t)| *t == ty)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    fn pick(&self, rng: &mut Rng, ty: Ty) -> Option<String> {
        let names = self.of(ty);
        (!names.is_empty()).then(|| names[rng.below(names.len())].to_owned())
    }
}

const WORDS: [&str; 8] = ["ada", "Bob", "c-d", "x y", "zeta", "a,b", "Émile", "ok"];

pub(super) fn word(rng: &mut Rng) -> &'static str {
    WORDS[rng.below(WORDS.len())]
}

/// A Jinja expression of type `ty`.
pub(super) fn expr(rng: &mut Rng, scope: &Scope, ty: Ty, depth: u32) -> String {
    if depth == 0 || rng.chance(0.3) {
        return leaf(rng, scope, ty);
    }
    let d = depth - 1;
    let e = |t: Ty, rng: &mut Rng| expr(rng, scope, t, d);
    match ty {
        Ty::Int => match rng.below(13) {
            0 => format!("({} + {})", e(Ty::Int, rng), e(Ty::Int, rng)),
            1 => format!("({} - {})", e(Ty::Int, rng), e(Ty::Int, rng)),
            2 => format!("({} * {})", e(Ty::Int, rng), small_int(rng)),
            3 => format!("({} // {})", e(Ty::Int, rng), divisor(rng, scope)),
            4 => format!("({} % {})", e(Ty::Int, rng), divisor(rng, scope)),
            5 => format!("({} | length)", e(Ty::Str, rng)),
            6 => format!("({} | length)", e(Ty::IntList, rng)),
            7 => format!("({} | sum)", e(Ty::IntList, rng)),
            8 => format!(
                "({} | {})",
                e(Ty::IntList, rng),
                rng.pick(&["max", "min", "first", "last"])
            ),
            9 => format!("({} | round | int)", e(Ty::Float, rng)),
            10 => format!("({} | abs)", e(Ty::Int, rng)),
            11 => format!(
                "({} if {} else {})",
                e(Ty::Int, rng),
                e(Ty::Bool, rng),
                e(Ty::Int, rng)
            ),
            _ => format!("({} | int)", e(Ty::Float, rng)),
        },
        Ty::Float => match rng.below(6) {
            0 => format!("({} / {})", e(Ty::Int, rng), divisor(rng, scope)),
            1 => format!("({} * {})", e(Ty::Float, rng), e(Ty::Float, rng)),
            2 => format!("({} + {})", e(Ty::Float, rng), e(Ty::Int, rng)),
            3 => format!("({} | round(1))", e(Ty::Float, rng)),
            4 => format!("({} | float)", e(Ty::Int, rng)),
            _ => format!("({} - {})", e(Ty::Float, rng), e(Ty::Float, rng)),
        },
        Ty::Str => match rng.below(12) {
            0 => format!(
                "({} | {})",
                e(Ty::Str, rng),
                rng.pick(&["upper", "lower", "title", "capitalize", "trim"])
            ),
            1 => format!("({} ~ {})", e(Ty::Str, rng), e(Ty::Str, rng)),
            2 => format!("({} ~ {})", e(Ty::Str, rng), e(Ty::Int, rng)),
            3 => format!("({} | join('-'))", e(Ty::StrList, rng)),
            4 => format!("({} | join(','))", e(Ty::IntList, rng)),
            5 => format!("({} | replace('a', '_'))", e(Ty::Str, rng)),
            6 => format!("({} | string)", e(Ty::Int, rng)),
            7 => format!("({}[:2])", e(Ty::Str, rng)),
            8 => format!("({} | reverse)", e(Ty::Str, rng)),
            9 => format!(
                "('%s=%s' | format({}, {}))",
                e(Ty::Str, rng),
                e(Ty::Int, rng)
            ),
            10 => format!("{}.upper()", e(Ty::Str, rng)),
            _ => format!(
                "({} if {} else {})",
                e(Ty::Str, rng),
                e(Ty::Bool, rng),
                e(Ty::Str, rng)
            ),
        },
        Ty::Bool => match rng.below(9) {
            0 => format!("({} > {})", e(Ty::Int, rng), e(Ty::Int, rng)),
            1 => format!("({} == {})", e(Ty::Int, rng), e(Ty::Int, rng)),
            2 => format!("({} == {})", e(Ty::Str, rng), e(Ty::Str, rng)),
            3 => format!("({} in {})", e(Ty::Str, rng), e(Ty::StrList, rng)),
            4 => format!("({} in {})", e(Ty::Int, rng), e(Ty::IntList, rng)),
            5 => format!("(not {})", e(Ty::Bool, rng)),
            6 => format!("({} and {})", e(Ty::Bool, rng), e(Ty::Bool, rng)),
            7 => format!("({} is {})", e(Ty::Int, rng), rng.pick(&["even", "odd"])),
            _ => format!("({} <= {})", e(Ty::Float, rng), e(Ty::Float, rng)),
        },
        Ty::IntList => match rng.below(7) {
            0 => format!("({} | sort | list)", e(Ty::IntList, rng)),
            1 => format!("({} | reverse | list)", e(Ty::IntList, rng)),
            2 => format!("({} | unique | list)", e(Ty::IntList, rng)),
            3 => format!("(range({} % 5) | list)", e(Ty::Int, rng)),
            4 => format!("({} | select('odd') | list)", e(Ty::IntList, rng)),
            5 => format!("({} + {})", e(Ty::IntList, rng), e(Ty::IntList, rng)),
            _ => format!("({}[1:])", e(Ty::IntList, rng)),
        },
        Ty::StrList => match rng.below(4) {
            0 => format!("({} | list)", e(Ty::Str, rng)),
            1 => format!("({} | sort | list)", e(Ty::StrList, rng)),
            2 => format!("({} | map('upper') | list)", e(Ty::StrList, rng)),
            _ => format!("{}.split('-')", e(Ty::Str, rng)),
        },
    }
}

fn small_int(rng: &mut Rng) -> String {
    rng.range(-3, 9).to_string()
}

/// A divisor: mostly a non-zero literal, sometimes a variable that may be zero.
fn divisor(rng: &mut Rng, scope: &Scope) -> String {
    if rng.chance(0.2)
        && let Some(var) = scope.pick(rng, Ty::Int)
    {
        return var;
    }
    rng.pick(&["2", "3", "7", "-4"]).to_owned()
}

fn leaf(rng: &mut Rng, scope: &Scope, ty: Ty) -> String {
    if rng.chance(0.7)
        && let Some(var) = scope.pick(rng, ty)
    {
        return var;
    }
    literal(rng, ty)
}

/// A Jinja literal of type `ty`.
pub(super) fn literal(rng: &mut Rng, ty: Ty) -> String {
    match ty {
        Ty::Int => rng.range(-5, 20).to_string(),
        Ty::Float => rng.pick(&["0.5", "1.25", "2.0", "-3.5", "0.1"]).to_owned(),
        Ty::Str => format!("'{}'", word(rng)),
        Ty::Bool => rng.pick(&["true", "false"]).to_owned(),
        Ty::IntList => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|_| rng.range(-2, 9).to_string())
                .collect();
            format!("[{}]", items.join(", "))
        }
        Ty::StrList => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|_| format!("'{}'", word(rng)))
                .collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A whole template whose rendering has type `ty` once both sides read it back as JSON.
pub(super) fn template(rng: &mut Rng, scope: &Scope, ty: Ty) -> String {
    let depth = rng.range(0, 4) as u32;
    match rng.below(10) {
        // Text around a value: always a string (unless it happens to read as JSON).
        0 if matches!(ty, Ty::Str) => {
            format!("v={{{{ {} }}}}.", expr(rng, scope, Ty::Int, depth))
        }
        1 => format!(
            "{{% if {} %}}{{{{ {} }}}}{{% else %}}{{{{ {} }}}}{{% endif %}}",
            expr(rng, scope, Ty::Bool, 1),
            expr(rng, scope, ty, depth),
            expr(rng, scope, ty, depth)
        ),
        2 if matches!(ty, Ty::Str) => format!(
            "{{% for x in {} %}}{{{{ x }}}};{{% endfor %}}",
            expr(rng, scope, Ty::StrList, depth)
        ),
        3 => format!("{{% set t = {} %}}{{{{ t }}}}", expr(rng, scope, ty, depth)),
        _ => format!("{{{{ {} }}}}", expr(rng, scope, ty, depth)),
    }
}

/// A transition condition over `context.*` variables, in the simple expression language or
/// in CEL. Only booleans that came into the context natively (a bare path, a YAML literal)
/// are read as booleans.
pub(super) fn condition(rng: &mut Rng, scope: &Scope, cel: bool) -> String {
    let atom = |rng: &mut Rng| -> String {
        let kinds: Vec<Ty> = [Ty::Int, Ty::Str, Ty::Bool, Ty::Float]
            .into_iter()
            .filter(|t| !scope.of(*t).is_empty())
            .collect();
        let Some(&ty) = (!kinds.is_empty()).then(|| &kinds[rng.below(kinds.len())]) else {
            return if cel { "true".into() } else { "True".into() };
        };
        let var = scope.pick(rng, ty).unwrap_or_default();
        // The reference's simple engine has no unary minus (a documented divergence), so
        // its literals are not negative.
        let low = if cel { -2 } else { 0 };
        match ty {
            Ty::Int => {
                let op = rng.pick(&[">", "<", ">=", "<=", "==", "!="]);
                if rng.chance(0.3) {
                    format!("{var} + {} {op} {}", rng.range(0, 4), rng.range(low, 12))
                } else {
                    format!("{var} {op} {}", rng.range(low, 12))
                }
            }
            Ty::Float if cel => format!("{var} > {}", rng.pick(&["0.0", "1.5", "-2.0"])),
            Ty::Float => format!("{var} > {}", rng.pick(&["0.0", "1.5", "2"])),
            Ty::Str => {
                let w = word(rng);
                let op = rng.pick(&["==", "!="]);
                if cel {
                    format!("{var} {op} \"{w}\"")
                } else {
                    format!("{var} {op} '{w}'")
                }
            }
            _ => {
                if rng.chance(0.5) {
                    var
                } else if cel {
                    format!("!{var}")
                } else {
                    format!("not {var}")
                }
            }
        }
    };
    let first = atom(rng);
    if rng.chance(0.35) {
        let second = atom(rng);
        let op = match (cel, rng.chance(0.5)) {
            (true, true) => "&&",
            (true, false) => "||",
            (false, true) => "and",
            (false, false) => "or",
        };
        format!("{first} {op} {second}")
    } else {
        first
    }
}

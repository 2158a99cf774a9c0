//! Comparing the two sides' outcomes. Equal outcomes agree; otherwise a difference is accepted
//! only by a named rule, each one a row of `docs/divergences.md`. A rule can be switched off
//! (`--without-rule NAME`) to check that the fuzzer finds the divergence it covers.

use serde_json::Value;

use super::run::Outcome;

/// A documented divergence the comparison accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    pub(super) name: &'static str,
    /// The row of docs/divergences.md it stands for.
    pub(super) documented: &'static str,
}

pub(super) const RULES: [Rule; 11] = [
    Rule {
        name: "python-booleans",
        documented: "Templates: booleans render as JSON true/false, the reference's as \"True\"/\"False\"",
    },
    Rule {
        name: "python-none",
        documented: "Templates: null renders as null, the reference's as \"None\"",
    },
    Rule {
        name: "error-details",
        documented: "Errors: error type names are ours, and a failed child's message says which machine failed in which state",
    },
    Rule {
        name: "both-fail",
        documented: "Errors: a run that fails on both sides agrees whatever the error (types and messages are ours)",
    },
    Rule {
        name: "step-limit",
        documented: "The run: a run at its step limit stops there; the reference returns its output so far",
    },
    Rule {
        name: "no-transition",
        documented: "The run: a non-final state with no matching transition fails with NoTransition; the reference ends with {}",
    },
    Rule {
        name: "empty-foreach",
        documented: "Templates: an empty foreach without key gives [], the reference's {}",
    },
    Rule {
        name: "non-finite-floats",
        documented: "Config files: .inf, -.inf and .nan are null here, Python floats in the reference",
    },
    Rule {
        name: "unary-minus",
        documented: "Expressions: unary minus works in conditions (`context.x > -2`); the reference's simple engine refuses it",
    },
    Rule {
        name: "cel-mixed-equality",
        documented: "Expressions: in CEL, == and != between values of different types are false and true, as the CEL spec says; cel-python raises \"no such overload\"",
    },
    Rule {
        name: "load-time-errors",
        documented: "The run: template and expression syntax errors are config errors when the machine loads, not when the state is reached",
    },
];

/// The rules in force.
#[derive(Clone, Debug)]
pub(super) struct Rules {
    on: Vec<&'static str>,
}

impl Rules {
    pub(super) fn all() -> Rules {
        Rules {
            on: RULES.iter().map(|r| r.name).collect(),
        }
    }

    /// All rules but `name`, or an error listing the known names.
    pub(super) fn without(mut self, name: &str) -> Result<Rules, String> {
        if !RULES.iter().any(|r| r.name == name) {
            let names: Vec<&str> = RULES.iter().map(|r| r.name).collect();
            return Err(format!(
                "unknown rule `{name}` (the rules are: {})",
                names.join(", ")
            ));
        }
        self.on.retain(|n| *n != name);
        Ok(self)
    }

    fn has(&self, name: &str) -> bool {
        self.on.contains(&name)
    }
}

/// How a case came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Identical outcomes.
    Same,
    /// Different, by these rules only.
    Accepted(Vec<&'static str>),
    /// A side was lost (time, memory, crash): not compared.
    Lost(String),
    /// A difference no rule accepts, with a short class for the minimiser to keep.
    Mismatch(&'static str),
}

/// Compares our outcome with the reference's.
pub(super) fn compare(ours: &Outcome, reference: &Outcome, rules: &Rules) -> Verdict {
    let mut used = Vec::new();
    let verdict = compare_outcomes(ours, reference, rules, &mut used);
    match verdict {
        Ok(()) if used.is_empty() => Verdict::Same,
        Ok(()) => {
            used.sort_unstable();
            used.dedup();
            Verdict::Accepted(used)
        }
        Err(v) => v,
    }
}

fn compare_outcomes(
    ours: &Outcome,
    reference: &Outcome,
    rules: &Rules,
    used: &mut Vec<&'static str>,
) -> Result<(), Verdict> {
    let mut accept = |rule: &'static str, class: &'static str| {
        if rules.has(rule) {
            used.push(rule);
            Ok(())
        } else {
            Err(Verdict::Mismatch(class))
        }
    };
    if let Outcome::Failed { message, .. } = reference
        && message.contains("Unsupported unary operator: USub")
        && !matches!(ours, Outcome::Lost(_))
    {
        return accept("unary-minus", "the reference refused a unary minus");
    }
    if let Outcome::Failed { message, .. } = reference
        && message.contains("no such overload")
        && (message.contains("relation_eq") || message.contains("relation_ne"))
        && !matches!(ours, Outcome::Lost(_))
    {
        return accept("cel-mixed-equality", "cel-python refused == between types");
    }
    match (ours, reference) {
        (Outcome::Lost(why), _) => Err(Verdict::Lost(format!("ours: {why}"))),
        (_, Outcome::Lost(why)) => Err(Verdict::Lost(format!("reference: {why}"))),
        (Outcome::Output(o), Outcome::Output(r)) => {
            if values_agree(o, r, rules, used, false) {
                Ok(())
            } else {
                Err(Verdict::Mismatch("outputs differ"))
            }
        }
        (Outcome::Failed { .. }, Outcome::Failed { .. }) => accept("both-fail", "both failed"),
        (Outcome::Refused(_), Outcome::Failed { .. }) => {
            accept("load-time-errors", "ours refused, the reference failed")
        }
        (Outcome::StepLimit(_), Outcome::StepLimit(_)) => {
            accept("step-limit", "both at the step limit")
        }
        (Outcome::NoTransition, Outcome::Output(r)) if is_empty_object(r) => {
            accept("no-transition", "no transition")
        }
        (Outcome::StepLimit(_), _) => Err(Verdict::Mismatch("only ours reached the step limit")),
        (_, Outcome::StepLimit(_)) => Err(Verdict::Mismatch(
            "only the reference reached the step limit",
        )),
        (Outcome::Output(_), Outcome::Failed { .. }) => {
            Err(Verdict::Mismatch("only the reference failed"))
        }
        (Outcome::Failed { .. } | Outcome::NoTransition, _) => {
            Err(Verdict::Mismatch("only ours failed"))
        }
        (Outcome::Refused(_), _) => Err(Verdict::Mismatch("only ours refused the machine")),
        (Outcome::Output(_), Outcome::NoTransition | Outcome::Refused(_)) => Err(
            Verdict::Mismatch("the reference gave an outcome it cannot give"),
        ),
    }
}

fn is_empty_object(value: &Value) -> bool {
    value.as_object().is_some_and(serde_json::Map::is_empty)
}

/// Whether our value `o` and the reference's `r` agree, by equality or by a rule in force.
/// `error_field`: the values sit under `_error`/`_error_type`, whose text is ours.
fn values_agree(
    o: &Value,
    r: &Value,
    rules: &Rules,
    used: &mut Vec<&'static str>,
    error_field: bool,
) -> bool {
    let mut by = |rule: &'static str| {
        let on = rules.has(rule);
        if on {
            used.push(rule);
        }
        on
    };
    match (o, r) {
        // 2 and 2.0 differ: Python keeps the two apart, and so does JSON's text.
        (Value::Number(a), Value::Number(b)) => a == b,
        (Value::Null | Value::String(_), Value::Object(b))
            if b.contains_key("$float") && b.len() == 1 =>
        {
            by("non-finite-floats")
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(k, v)| {
                    b.get(k).is_some_and(|w| {
                        let error = k == "_error" || k == "_error_type";
                        values_agree(v, w, rules, used, error)
                    })
                })
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(v, w)| values_agree(v, w, rules, used, false))
        }
        (Value::String(a), Value::String(b)) if error_field => a == b || by("error-details"),
        (Value::Bool(true), Value::String(s)) if s == "True" => by("python-booleans"),
        (Value::Bool(false), Value::String(s)) if s == "False" => by("python-booleans"),
        (Value::Null, Value::String(s)) if s == "None" => by("python-none"),
        (Value::Array(a), Value::Object(b)) if a.is_empty() && b.is_empty() => by("empty-foreach"),
        _ => o == r,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn output(value: Value) -> Outcome {
        Outcome::Output(value)
    }

    #[test]
    fn a_documented_divergence_is_accepted_by_its_rule_and_only_by_it() {
        let ours = output(json!({"flag": true, "n": 2}));
        let reference = output(json!({"flag": "True", "n": 2}));
        assert_eq!(
            compare(&ours, &reference, &Rules::all()),
            Verdict::Accepted(vec!["python-booleans"])
        );
        let planted = Rules::all().without("python-booleans").unwrap();
        assert_eq!(
            compare(&ours, &reference, &planted),
            Verdict::Mismatch("outputs differ")
        );
    }

    #[test]
    fn numbers_agree_by_value_and_kind() {
        let rules = Rules::all();
        assert_eq!(
            compare(&output(json!(2.0)), &output(json!(2.0)), &rules),
            Verdict::Same
        );
        assert_eq!(
            compare(&output(json!(2)), &output(json!(2.0)), &rules),
            Verdict::Mismatch("outputs differ")
        );
    }

    #[test]
    fn error_text_is_ours_only_under_error_fields() {
        let rules = Rules::all();
        let ours = output(
            json!({"a": {"_error": "division by zero in c0", "_error_type": "ZeroDivision"}}),
        );
        let reference = output(
            json!({"a": {"_error": "integer division or modulo by zero", "_error_type": "ZeroDivisionError"}}),
        );
        assert_eq!(
            compare(&ours, &reference, &rules),
            Verdict::Accepted(vec!["error-details"])
        );
        let text = output(json!({"a": "x"}));
        assert_eq!(
            compare(&text, &output(json!({"a": "y"})), &rules),
            Verdict::Mismatch("outputs differ")
        );
    }

    #[test]
    fn outcomes_of_different_kinds_are_mismatches_unless_a_rule_covers_them() {
        let rules = Rules::all();
        let failed = Outcome::Failed {
            kind: "TypeError".into(),
            message: String::new(),
        };
        assert_eq!(
            compare(&output(json!({})), &failed, &rules),
            Verdict::Mismatch("only the reference failed")
        );
        assert_eq!(
            compare(&Outcome::NoTransition, &output(json!({})), &rules),
            Verdict::Accepted(vec!["no-transition"])
        );
        assert_eq!(
            compare(&Outcome::NoTransition, &output(json!({"a": 1})), &rules),
            Verdict::Mismatch("only ours failed")
        );
        assert!(Rules::all().without("no-such-rule").is_err());
    }
}

//! The `mdap_voting` execution type (first-to-ahead-by-k voting, from the MAKER paper).

use std::collections::BTreeMap;

use async_trait::async_trait;
use regex::Regex;
use serde_json::{Map, Value};

use flatmachines_core::config::ExecutionConfig;
use flatmachines_core::{AgentError, AgentExecutor, AgentResult, ExecutionType, JsonMap};

use super::{cost_of, usage_of};
use crate::error_types;

/// Samples the agent until one answer has `k_margin` votes or leads the runner-up by
/// `k_margin`, drawing at most `max_candidates` samples; falls back to the most voted answer.
///
/// The agent's metadata may override the options (`mdap: {k_margin, max_candidates,
/// max_response_tokens}`), give regex `parsing` rules per field (`{pattern, type: str|int|json}`,
/// group 1 is the value), and a JSON Schema `validation` for parsed answers. An answer that
/// does not parse, fails validation, or is too long is red-flagged and gets no vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdapVoting {
    /// Votes (or lead) needed to win.
    pub k_margin: u32,
    /// Most samples to draw.
    pub max_candidates: u32,
    /// Answers longer than this many estimated tokens (4 characters each) are red-flagged.
    pub max_response_tokens: Option<u64>,
}

impl MdapVoting {
    /// Reads `k_margin` (default 3), `max_candidates` (default 10), `max_response_tokens`.
    pub fn from_config(config: &ExecutionConfig) -> Result<Self, String> {
        let voting = MdapVoting {
            k_margin: config.k_margin.unwrap_or(3),
            max_candidates: config.max_candidates.unwrap_or(10),
            max_response_tokens: config.max_response_tokens,
        };
        voting.check()?;
        Ok(voting)
    }

    fn check(&self) -> Result<(), String> {
        if self.k_margin == 0 {
            return Err("k_margin must be at least 1".to_owned());
        }
        if self.max_candidates == 0 || self.max_candidates > 1000 {
            return Err(format!(
                "max_candidates must be between 1 and 1000, found {}",
                self.max_candidates
            ));
        }
        Ok(())
    }

    /// These options with the agent's `mdap` metadata applied.
    fn with_metadata(&self, metadata: Option<&JsonMap>) -> Result<MdapVoting, AgentError> {
        let mut voting = self.clone();
        let Some(Value::Object(mdap)) = metadata.and_then(|m| m.get("mdap")) else {
            return Ok(voting);
        };
        let positive = |key: &str| mdap.get(key).and_then(Value::as_u64).filter(|v| *v > 0);
        if let Some(k) = positive("k_margin") {
            voting.k_margin = u32::try_from(k).unwrap_or(u32::MAX);
        }
        if let Some(n) = positive("max_candidates") {
            voting.max_candidates = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(t) = positive("max_response_tokens") {
            voting.max_response_tokens = Some(t);
        }
        voting.check().map_err(invalid)?;
        Ok(voting)
    }
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(message).with_type(error_types::INVALID_VALUE)
}

enum FieldType {
    Text,
    Int,
    Json,
}

/// The agent's `parsing` rules and `validation` schema.
struct Checks {
    patterns: Vec<(String, Regex, FieldType)>,
    validator: Option<jsonschema::Validator>,
    max_response_tokens: Option<u64>,
}

impl Checks {
    fn from_metadata(
        metadata: Option<&JsonMap>,
        max_response_tokens: Option<u64>,
    ) -> Result<Checks, AgentError> {
        let mut patterns = Vec::new();
        if let Some(Value::Object(parsing)) = metadata.and_then(|m| m.get("parsing")) {
            for (field, rule) in parsing {
                let Some(pattern) = rule.get("pattern").and_then(Value::as_str) else {
                    continue;
                };
                let regex = Regex::new(&format!("(?s){pattern}")).map_err(|e| {
                    invalid(format!(
                        "parsing pattern of field `{field}` does not compile: {e}"
                    ))
                })?;
                let kind = match rule.get("type").and_then(Value::as_str) {
                    Some("int") => FieldType::Int,
                    Some("json") => FieldType::Json,
                    _ => FieldType::Text,
                };
                patterns.push((field.clone(), regex, kind));
            }
        }
        let validator = match metadata.and_then(|m| m.get("validation")) {
            None | Some(Value::Null) => None,
            Some(schema) => Some(
                jsonschema::validator_for(schema)
                    .map_err(|e| invalid(format!("the validation schema is invalid: {e}")))?,
            ),
        };
        Ok(Checks {
            patterns,
            validator,
            max_response_tokens,
        })
    }

    fn parse(&self, content: &str) -> Option<JsonMap> {
        let mut parsed = Map::new();
        for (field, regex, kind) in &self.patterns {
            let text = regex.captures(content)?.get(1)?.as_str();
            let value = match kind {
                FieldType::Text => Value::String(text.to_owned()),
                FieldType::Int => Value::from(text.trim().parse::<i64>().ok()?),
                FieldType::Json => serde_json::from_str(text).ok()?,
            };
            parsed.insert(field.clone(), value);
        }
        Some(parsed)
    }

    /// The answer to vote with and its text, or the red flag that disqualifies it.
    fn candidate(&self, result: &AgentResult) -> Result<JsonMap, &'static str> {
        let content = result.content.as_deref().unwrap_or("");
        let (candidate, text) = if !self.patterns.is_empty() {
            let parsed = if content.is_empty() {
                None
            } else {
                self.parse(content)
            };
            (parsed, content.to_owned())
        } else if let Some(output) = &result.output {
            let text = if content.is_empty() {
                canonical_json(&Value::Object(output.clone()))
            } else {
                content.to_owned()
            };
            (Some(output.clone()), text)
        } else if !content.is_empty() {
            let mut map = Map::new();
            map.insert("content".into(), Value::String(content.to_owned()));
            (Some(map), content.to_owned())
        } else {
            (None, String::new())
        };
        let candidate = candidate.ok_or("format_error")?;
        if let Some(validator) = &self.validator
            && !validator.is_valid(&Value::Object(candidate.clone()))
        {
            return Err("validation_failed");
        }
        if let Some(limit) = self.max_response_tokens
            && (text.chars().count() / 4) as u64 > limit
        {
            return Err("length_exceeded");
        }
        Ok(candidate)
    }
}

/// JSON with object keys sorted, so equal answers get equal vote keys.
fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let sorted = sorted(value);
    serde_json::to_string(&sorted).unwrap_or_default()
}

#[async_trait]
impl ExecutionType for MdapVoting {
    async fn execute(
        &self,
        executor: &dyn AgentExecutor,
        input: &JsonMap,
        context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        let metadata = executor.metadata();
        let voting = self.with_metadata(metadata)?;
        let checks = Checks::from_metadata(metadata, voting.max_response_tokens)?;
        // (vote key, answer, votes) in first-seen order, which breaks ties like the reference.
        let mut tally: Vec<(String, JsonMap, u32)> = Vec::new();
        let mut samples = 0u32;
        let mut red_flags: BTreeMap<&'static str, u32> = BTreeMap::new();
        let mut api_calls = 0;
        let mut cost = 0.0;
        let mut winner = None;
        for _ in 0..voting.max_candidates {
            let result = match executor.execute(input, context).await {
                Ok(result) => result,
                Err(error) => {
                    tracing::warn!(error = %error, "voting sample failed");
                    continue;
                }
            };
            samples += 1;
            api_calls += result.api_calls();
            cost += result.total_cost();
            let candidate = match checks.candidate(&result) {
                Ok(candidate) => candidate,
                Err(flag) => {
                    *red_flags.entry(flag).or_default() += 1;
                    continue;
                }
            };
            let key = canonical_json(&Value::Object(candidate.clone()));
            let index = match tally.iter().position(|(k, _, _)| *k == key) {
                Some(index) => index,
                None => {
                    tally.push((key, candidate, 0));
                    tally.len() - 1
                }
            };
            tally[index].2 += 1;
            if tally[index].2 >= voting.k_margin {
                winner = Some(index);
                break;
            }
            let mut counts: Vec<u32> = tally.iter().map(|(_, _, votes)| *votes).collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            if counts.len() >= 2 && counts[0] - counts[1] >= voting.k_margin {
                winner = most_voted(&tally);
                break;
            }
        }
        let winner = winner.or_else(|| most_voted(&tally));
        let mut metrics = Map::new();
        metrics.insert("total_samples".into(), Value::from(samples));
        metrics.insert(
            "total_red_flags".into(),
            Value::from(red_flags.values().sum::<u32>()),
        );
        metrics.insert(
            "red_flags_by_reason".into(),
            Value::Object(
                red_flags
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Value::from(v)))
                    .collect(),
            ),
        );
        let mut metadata = Map::new();
        metadata.insert("mdap".into(), Value::Object(metrics));
        Ok(AgentResult {
            output: winner.map(|index| tally[index].1.clone()),
            usage: usage_of(api_calls),
            cost: cost_of(cost),
            metadata: Some(metadata),
            ..AgentResult::default()
        })
    }
}

/// The index with the most votes; the first seen wins ties.
fn most_voted(tally: &[(String, JsonMap, u32)]) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for (index, (_, _, votes)) in tally.iter().enumerate() {
        if best.is_none_or(|(_, most)| *votes > most) {
            best = Some((index, *votes));
        }
    }
    best.map(|(index, _)| index)
}

//! The tools of the trip planner example: a forecast and a currency converter, both answered
//! from fixed tables so that runs are reproducible.

use serde_json::{Value, json};

use flatmachines_engine::{RuntimeBuilder, ToolSet};

/// The example's tools.
pub(crate) fn tools() -> ToolSet {
    ToolSet::new()
        .tool(
            "weather",
            "The forecast for the next days in a city",
            json!({
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city"}},
                "required": ["city"]
            }),
            |args, _id| async move {
                let city = args["city"].as_str().ok_or("`city` must be a string")?;
                let forecast = match city.to_lowercase().as_str() {
                    "lisbon" => "sunny, 24 °C",
                    "porto" => "cloudy, 19 °C",
                    "oslo" => "rain, 9 °C",
                    _ => return Err(format!("no forecast for {city}")),
                };
                Ok(json!({"city": city, "forecast": forecast}))
            },
        )
        .tool(
            "convert",
            "Converts an amount from EUR to another currency",
            json!({
                "type": "object",
                "properties": {
                    "amount": {"type": "number"},
                    "currency": {"type": "string", "description": "USD, GBP or NOK"}
                },
                "required": ["amount", "currency"]
            }),
            |args, _id| async move {
                let amount = args["amount"].as_f64().ok_or("`amount` must be a number")?;
                let rate = match args["currency"].as_str().unwrap_or_default() {
                    "USD" => 1.08,
                    "GBP" => 0.85,
                    "NOK" => 11.6,
                    other => return Err(format!("no rate for `{other}`")),
                };
                Ok(Value::from((amount * rate * 100.0).round() / 100.0))
            },
        )
}

/// `builder` with the example's tools.
pub(crate) fn with_tools(builder: RuntimeBuilder) -> RuntimeBuilder {
    builder.tool_provider(std::sync::Arc::new(tools()))
}

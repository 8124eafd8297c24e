pub fn job_schema() -> serde_json::Value { serde_json::Value::Null }

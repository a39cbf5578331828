//! Checks answers of the query API against its OpenAPI description (`tcp-info/src/api/
//! openapi.json`): the status is one the operation lists, the content type is the one listed
//! for it, and a JSON body matches its schema. The validator covers the schema keywords the
//! description uses (`$ref`, `type`, `required`, `properties`, `items`, `enum`, `nullable`,
//! `minimum`, `maximum`, `additionalProperties`) and fails on any other, so the description
//! cannot drift past what is checked.

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// The parsed description.
#[derive(Debug, Clone)]
pub struct OpenApi {
    spec: Value,
}

/// The keywords [`OpenApi::validate`] understands.
const KEYWORDS: [&str; 11] = [
    "$ref",
    "type",
    "required",
    "properties",
    "items",
    "enum",
    "nullable",
    "minimum",
    "maximum",
    "additionalProperties",
    "description",
];

impl OpenApi {
    /// Parses the description.
    pub fn parse(text: &str) -> Result<Self> {
        let spec: Value = serde_json::from_str(text).context("openapi.json is not JSON")?;
        if !spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
        {
            bail!("not an OpenAPI 3 description");
        }
        Ok(Self { spec })
    }

    /// Every path template with its operations (`get`, …).
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(paths) = self.spec["paths"].as_object() {
            for (path, item) in paths {
                if let Some(item) = item.as_object() {
                    out.extend(item.keys().map(|m| (path.clone(), m.clone())));
                }
            }
        }
        out
    }

    /// The path template `path` matches (`/v1/connections/abc` → `/v1/connections/{uuid}`).
    pub fn template_of(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('/').collect();
        self.spec["paths"].as_object()?.keys().find_map(|t| {
            let tparts: Vec<&str> = t.split('/').collect();
            (tparts.len() == parts.len()
                && tparts
                    .iter()
                    .zip(&parts)
                    .all(|(t, p)| t.starts_with('{') || t == p))
            .then(|| t.clone())
        })
    }

    /// The parameter names an operation declares.
    pub fn parameters(&self, template: &str, method: &str) -> Result<Vec<String>> {
        let op = &self.spec["paths"][template][method];
        let mut out = Vec::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            let p = self.resolve(p)?;
            out.push(
                p["name"]
                    .as_str()
                    .context("parameter without name")?
                    .to_owned(),
            );
        }
        Ok(out)
    }

    /// Checks one answer to `GET path` (the query string stripped) with `status`,
    /// `content_type` and `body`.
    pub fn check(&self, path: &str, status: u16, content_type: &str, body: &str) -> Result<()> {
        let template = self
            .template_of(path)
            .with_context(|| format!("{path}: no such path in the description"))?;
        let op = &self.spec["paths"][&template]["get"];
        let response = op["responses"]
            .get(status.to_string())
            .with_context(|| format!("{path}: status {status} is not described"))?;
        let response = self.resolve(response)?;
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let Some(described) = response["content"].get(media) else {
            bail!("{path} {status}: content type {media} is not described");
        };
        if media == "application/json" {
            let value: Value = serde_json::from_str(body)
                .with_context(|| format!("{path} {status}: body is not JSON"))?;
            self.validate(&described["schema"], &value, "$")
                .with_context(|| format!("{path} {status}"))?;
        }
        Ok(())
    }

    fn resolve<'a>(&'a self, value: &'a Value) -> Result<&'a Value> {
        let Some(reference) = value["$ref"].as_str() else {
            return Ok(value);
        };
        let pointer = reference
            .strip_prefix('#')
            .with_context(|| format!("external $ref {reference}"))?;
        let target = self
            .spec
            .pointer(pointer)
            .with_context(|| format!("dangling $ref {reference}"))?;
        self.resolve(target)
    }

    /// Validates `value` against `schema`; `at` names the place for errors.
    pub fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<()> {
        let schema = self.resolve(schema)?;
        let Some(keywords) = schema.as_object() else {
            bail!("{at}: schema is not an object");
        };
        if let Some(unknown) = keywords.keys().find(|k| !KEYWORDS.contains(&k.as_str())) {
            bail!("{at}: schema keyword {unknown} is not checked by this validator");
        }
        if value.is_null() {
            if schema["nullable"] == Value::Bool(true) {
                return Ok(());
            }
            bail!("{at}: null where the schema is not nullable");
        }
        if let Some(kind) = schema["type"].as_str() {
            let ok = match kind {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                other => bail!("{at}: unknown type {other}"),
            };
            if !ok {
                bail!("{at}: {value} is not of type {kind}");
            }
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            bail!("{at}: {value} is not one of {allowed:?}");
        }
        if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64())
            && n < min
        {
            bail!("{at}: {n} < minimum {min}");
        }
        if let (Some(max), Some(n)) = (schema["maximum"].as_f64(), value.as_f64())
            && n > max
        {
            bail!("{at}: {n} > maximum {max}");
        }
        if let Some(object) = value.as_object() {
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    bail!("{at}: required property {name} is missing");
                }
            }
            let properties = schema["properties"].as_object();
            for (name, v) in object {
                match properties.and_then(|p| p.get(name)) {
                    Some(s) => self.validate(s, v, &format!("{at}.{name}"))?,
                    None if schema["additionalProperties"] == Value::Bool(true) => {}
                    None => bail!("{at}: property {name} is not described"),
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, v) in array.iter().enumerate() {
                self.validate(items, v, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::OpenApi;

    const SPEC: &str = r##"{"openapi":"3.0.3","paths":{"/v1/x/{id}":{"get":{"responses":{
        "200":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/X"}}}}}}}},
        "components":{"schemas":{"X":{"type":"object","required":["a"],"properties":{
        "a":{"type":"integer","minimum":0},"b":{"type":"string","nullable":true,"enum":["p","q"]},
        "c":{"type":"array","items":{"type":"number"}}}}}}}"##;

    #[test]
    fn the_validator_catches_what_it_claims_to() {
        let api = OpenApi::parse(SPEC).unwrap();
        assert_eq!(api.template_of("/v1/x/abc").as_deref(), Some("/v1/x/{id}"));
        assert_eq!(api.template_of("/v1/y/abc"), None);
        let ok = r#"{"a":1,"b":null,"c":[1.5,2]}"#;
        api.check("/v1/x/1", 200, "application/json", ok).unwrap();
        for bad in [
            r#"{"b":"p"}"#,
            r#"{"a":-1}"#,
            r#"{"a":"1"}"#,
            r#"{"a":1,"b":"r"}"#,
            r#"{"a":1,"c":["x"]}"#,
            r#"{"a":1,"d":0}"#,
            r#"{"a":null}"#,
        ] {
            assert!(
                api.check("/v1/x/1", 200, "application/json", bad).is_err(),
                "{bad}"
            );
        }
        assert!(api.check("/v1/x/1", 404, "application/json", ok).is_err());
        assert!(api.check("/v1/x/1", 200, "text/html", ok).is_err());
        let unknown_keyword = json!({"type": "string", "pattern": "x"});
        assert!(api.validate(&unknown_keyword, &json!("x"), "$").is_err());
    }
}

//! The effective configuration as `leadscore check-config` prints it: TOML,
//! with secret values redacted and defaults that depend on other settings
//! resolved.

use super::*;

/// librdkafka option names whose values are secrets.
fn is_secret(key: &str) -> bool {
    ["password", "secret", "token", "key.pem", "private"].iter().any(|s| key.contains(s))
}

impl ServiceConfig {
    /// The same configuration with secret values replaced by `*****`, for
    /// printing and logging.
    pub fn redacted(&self) -> ServiceConfig {
        let mut c = self.clone();
        for (k, v) in c.kafka.librdkafka.iter_mut() {
            if is_secret(k) {
                *v = "*****".into();
            }
        }
        let f = &mut c.formats;
        for secret in [&mut f.schema_registry_password, &mut f.schema_registry_bearer_token, &mut c.admin.bearer_token]
        {
            if secret.is_some() {
                *secret = Some("*****".into());
            }
        }
        c
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        let mut effective = self.redacted();
        // Defaults that depend on other settings are printed as they apply.
        effective.processing.commit_interval = Some(self.processing.commit_interval());
        figment::value::Value::serialize(effective)
            .ok()
            .and_then(|v| v.into_dict())
            .map(|d| toml_of(&d))
            .unwrap_or_default()
    }
}

/// A small TOML writer for the effective config (tables of scalars and maps).
fn toml_of(root: &figment::value::Dict) -> String {
    use figment::value::Value;
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(_, s) => format!("{s:?}"),
            Value::Bool(_, b) => b.to_string(),
            Value::Num(_, n) => {
                n.to_u128().map(|n| n.to_string()).or_else(|| n.to_f64().map(|f| f.to_string())).unwrap_or_default()
            }
            other => format!("{other:?}"),
        }
    }
    fn key(k: &str) -> String {
        if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            k.to_string()
        } else {
            format!("{k:?}")
        }
    }
    fn table(out: &mut String, name: &str, d: &figment::value::Dict) {
        out.push_str(&format!("[{name}]\n"));
        let mut nested = Vec::new();
        for (k, v) in d {
            match v {
                Value::Dict(_, inner) => nested.push((k, inner)),
                // An option not set.
                Value::Empty(..) => {}
                v => out.push_str(&format!("{} = {}\n", key(k), scalar(v))),
            }
        }
        out.push('\n');
        for (k, inner) in nested {
            table(out, &format!("{name}.{}", key(k)), inner);
        }
    }
    let mut out = String::new();
    for (name, v) in root {
        if let Value::Dict(_, d) = v {
            table(&mut out, &key(name), d);
        }
    }
    out
}

//! Laying a user's TOML file over a default one, key by key: only the keys a file changes need
//! be in it. Unknown keys and values of the wrong type are recorded as problems, with their
//! dotted path, instead of stopping at the first.

use super::Problem;

/// Lays `user` over `base`, recording unknown keys and type mismatches instead of stopping.
pub fn merge(base: &mut toml::Table, user: toml::Table, prefix: &str, problems: &mut Vec<Problem>) {
    for (key, value) in user {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(existing) = base.get_mut(&key) else {
            let known: Vec<&str> = base.keys().map(String::as_str).collect();
            problems.push(Problem {
                key: path,
                why: format!("unknown key; expected one of: {}", known.join(", ")),
            });
            continue;
        };
        match (existing, value) {
            (toml::Value::Table(b), toml::Value::Table(u)) => merge(b, u, &path, problems),
            (toml::Value::Array(b), toml::Value::Array(u)) => {
                // Arrays replace the default; tables inside are checked against its first element.
                if let Some(toml::Value::Table(template)) = b.first().cloned() {
                    for (i, item) in u.iter().enumerate() {
                        match item {
                            toml::Value::Table(t) => {
                                let mut check = template.clone();
                                merge(&mut check, t.clone(), &format!("{path}[{i}]"), problems);
                                let missing: Vec<&String> =
                                    template.keys().filter(|k| !t.contains_key(*k)).collect();
                                for m in missing {
                                    problems.push(Problem {
                                        key: format!("{path}[{i}].{m}"),
                                        why: "missing".into(),
                                    });
                                }
                            }
                            other => problems.push(Problem {
                                key: format!("{path}[{i}]"),
                                why: format!("expected a table, got {}", other.type_str()),
                            }),
                        }
                    }
                } else if let Some(first) = b.first() {
                    for (i, item) in u.iter().enumerate() {
                        if item.type_str() != first.type_str() {
                            problems.push(Problem {
                                key: format!("{path}[{i}]"),
                                why: format!(
                                    "expected {}, got {}",
                                    first.type_str(),
                                    item.type_str()
                                ),
                            });
                        }
                    }
                }
                *b = u;
            }
            (existing, value) => {
                let numeric =
                    |v: &toml::Value| matches!(v, toml::Value::Integer(_) | toml::Value::Float(_));
                if existing.type_str() == value.type_str() {
                    *existing = value;
                } else if numeric(existing) && numeric(&value) {
                    // `3` where `3.0` is expected (or the reverse, when whole) is what users mean.
                    match (&*existing, &value) {
                        (toml::Value::Float(_), toml::Value::Integer(i)) => {
                            *existing = toml::Value::Float(*i as f64)
                        }
                        (toml::Value::Integer(_), toml::Value::Float(f)) if f.fract() == 0.0 => {
                            *existing = toml::Value::Integer(*f as i64)
                        }
                        _ => problems.push(Problem {
                            key: path,
                            why: format!("expected an integer, got {value}"),
                        }),
                    }
                } else {
                    problems.push(Problem {
                        key: path,
                        why: format!(
                            "expected {}, got {} `{value}`",
                            existing.type_str(),
                            value.type_str()
                        ),
                    });
                }
            }
        }
    }
}

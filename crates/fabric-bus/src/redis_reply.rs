//! Reading Redis replies whose shape differs between RESP2 and RESP3 (arrays or maps,
//! bulk or simple strings) into plain values.

use redis::streams::StreamId;
use redis::Value;

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

pub(crate) fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// A flat key/value array (RESP2) or a map (RESP3) as pairs.
pub(crate) fn fields(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        other => array(other)
            .chunks(2)
            .filter_map(|kv| Some((text(kv.first()?)?, kv.get(1)?)))
            .collect(),
    }
}

pub(crate) fn field(entry: &StreamId, name: &str) -> Option<String> {
    entry.map.get(name).and_then(text)
}

//! emit: renders decisions as the messages SIEM and SOAR consumers read
//! (`schemas/alert.v1.json`, `schemas/revocation-command.v1.json`) and writes them out.

pub mod command;
pub mod kafka;
pub mod ocsf;
pub mod sink;

use serde_json::Value;

use crate::decide::Decision;

/// The JSON message for a decision.
pub fn render(d: &Decision) -> Value {
    match d {
        Decision::Alert(a) => ocsf::detection_finding(a),
        Decision::Command(c) => command::revocation_command(c),
    }
}

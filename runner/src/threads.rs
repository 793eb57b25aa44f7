//! Replica thread maps as one line of text, the form `runner tune` prints
//! and `runner bench --replica-threads` takes.
//!
//! Threads are separated by `/`; a thread is its stages joined by `+`,
//! optionally pinned with `@<core>`:
//!
//! ```text
//! receive+verify+protocol+send@0       one thread on core 0
//! receive+verify/protocol+send         two threads, unpinned
//! receive/verify/verify/protocol+send  a receive thread, two verify threads, one for the rest
//! ```
//!
//! `single` and `per-stage` name the two usual maps. No character needs
//! quoting in a shell.

use wire::control::{Stage, ThreadMap, ThreadSpec};

/// Parses a thread map (see the module docs); the map is also checked to
/// run ([`ThreadMap::validate`]).
pub fn parse(text: &str) -> Result<ThreadMap, String> {
    let map = match text.trim() {
        "single" => ThreadMap::single(None),
        "per-stage" => ThreadMap::per_stage(),
        text => ThreadMap {
            threads: text
                .split('/')
                .map(parse_thread)
                .collect::<Result<_, _>>()?,
        },
    };
    map.validate()?;
    Ok(map)
}

fn parse_thread(text: &str) -> Result<ThreadSpec, String> {
    let (stages, core) = match text.split_once('@') {
        None => (text, None),
        Some((stages, core)) => {
            let core = core
                .trim()
                .parse()
                .map_err(|_| format!("{core:?} is not a core number"))?;
            (stages, Some(core))
        }
    };
    let stages = stages
        .split('+')
        .map(|stage| match stage.trim() {
            "receive" => Ok(Stage::Receive),
            "verify" => Ok(Stage::Verify),
            "protocol" => Ok(Stage::Protocol),
            "send" => Ok(Stage::Send),
            "" => Err(format!("{text:?} has an empty stage")),
            other => Err(format!(
                "{other:?} is not a stage (receive, verify, protocol, send)"
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(ThreadSpec { stages, core })
}

/// The map in the form [`parse`] reads.
pub fn format(map: &ThreadMap) -> String {
    let threads: Vec<String> = map
        .threads
        .iter()
        .map(|thread| {
            let stages: Vec<&str> = thread
                .stages
                .iter()
                .map(|stage| match stage {
                    Stage::Receive => "receive",
                    Stage::Verify => "verify",
                    Stage::Protocol => "protocol",
                    Stage::Send => "send",
                })
                .collect();
            match thread.core {
                None => stages.join("+"),
                Some(core) => format!("{}@{core}", stages.join("+")),
            }
        })
        .collect();
    threads.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_read_back_as_written() {
        for text in [
            "receive+verify+protocol+send@0",
            "receive+verify/protocol+send",
            "receive/verify/verify/protocol+send@1",
            "receive/verify/protocol/send",
        ] {
            assert_eq!(format(&parse(text).unwrap()), text);
        }
        assert_eq!(parse("single").unwrap(), ThreadMap::single(None));
        assert_eq!(parse("per-stage").unwrap(), ThreadMap::per_stage());
        assert_eq!(
            format(&ThreadMap::per_stage()),
            "receive/verify/protocol/send"
        );
    }

    #[test]
    fn bad_maps_say_why() {
        let error = |text| parse(text).unwrap_err();
        assert!(error("receive+verify").contains("Protocol must run on exactly one thread"));
        assert!(error("receive+verify+protocol+sned").contains("\"sned\" is not a stage"));
        assert!(error("receive+verify+protocol+send@x").contains("\"x\" is not a core"));
        assert!(error("receive++verify/protocol+send").contains("empty stage"));
    }
}

//! The batch manifest reader (`batch::manifest`): finished records followed
//! by whatever a crash, a full disk or a stranger left at the end of the
//! file. Reading never fails on content, every record written before the
//! damage survives (its outputs stay vouched for and it is not redone),
//! broken lines are reported, and the next run's append lands on a line of
//! its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolk::batch::manifest::{
    manifest_name, read_jsonl, JsonlContents, JsonlLog, ManifestIndex, OutputFile, Record,
    ResultRecord, Status,
};

#[path = "common.rs"]
mod common;

fn done(path: &str, t: u64) -> Record {
    let mut r = Record::new(path, Status::Done);
    r.key = Some(format!("key-{path}"));
    r.sha256 = Some(format!("sha-{path}"));
    r.outputs = vec![OutputFile {
        path: format!("{path}.en.txt"),
        sha256: format!("out-{path}"),
    }];
    r.finished_unix_ms = t;
    r
}

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch().join("out");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(manifest_name(None));
    let finished = [done("a.txt", 1), done("b/c.md", 2)];
    let mut bytes = Vec::new();
    for r in &finished {
        bytes.extend(serde_json::to_vec(r).unwrap());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(data);
    std::fs::write(&path, &bytes).unwrap();

    let contents: JsonlContents<Record> =
        read_jsonl(&path).expect("reading a manifest never fails on its content");
    let records: Vec<&Record> = contents.entries.iter().map(|(_, r)| r).collect();
    assert_eq!(
        records[..2],
        [&finished[0], &finished[1]],
        "a finished record was lost"
    );
    let _: Option<JsonlContents<ResultRecord>> = read_jsonl(&path).ok();

    let mut warnings = Vec::new();
    let index = ManifestIndex::load(&dir, false, &mut warnings)
        .expect("a manifest with records always loads");
    if !contents.broken_lines.is_empty() {
        assert!(!warnings.is_empty(), "broken lines were not reported");
    }
    for r in &finished {
        assert!(index.wrote(&r.outputs[0].path, &r.outputs[0].sha256));
        let overridden = records[2..].iter().any(|later| later.path == r.path);
        if !overridden {
            assert_eq!(
                index.latest(&r.path),
                Some(r),
                "a finished input would be redone"
            );
        }
    }

    // The next run appends: every complete line stays, the new one is last.
    let mut log = JsonlLog::open(&path).expect("a damaged manifest can be appended to");
    let next = done("d.txt", 3);
    log.append(&next).unwrap();
    drop(log);
    let after: JsonlContents<Record> = read_jsonl(&path).unwrap();
    let before_lines: Vec<&String> = contents.entries.iter().map(|(l, _)| l).collect();
    let after_lines: Vec<&String> = after.entries.iter().map(|(l, _)| l).collect();
    assert_eq!(
        after_lines.len(),
        before_lines.len() + 1,
        "the append lost or gained a line"
    );
    assert_eq!(after_lines[..before_lines.len()], before_lines[..]);
    assert_eq!(after.entries.last().map(|(_, r)| r), Some(&next));
});

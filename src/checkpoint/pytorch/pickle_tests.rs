//! Unit tests of the restricted unpickler.

use super::*;

fn run(bytes: &[u8]) -> Result<Value> {
    let mut reader: &[u8] = bytes;
    let mut input = Input::new(&mut reader, bytes.len() as u64);
    load(&mut input, &mut |pid| {
        Ok(Value::Storage(Rc::new(storage_from_pid(&pid)?)))
    })
}

#[test]
fn any_other_global_is_refused_before_it_is_called() {
    // GLOBAL os.system, ('touch x',), REDUCE, STOP
    let err = run(b"\x80\x02cos\nsystem\nq\x00X\x07\x00\x00\x00touch x\x85R.")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`os.system`"), "{err}");
    let err = run(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93X\x01\x00\x00\x001\x85R.")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`builtins.eval`"), "{err}");
    // An allowed class name under another module is still refused.
    assert!(run(b"cevil\nFloatStorage\n.").is_err());
}

#[test]
fn lengths_beyond_the_input_are_errors_not_allocations() {
    // BINUNICODE claiming 4 GB.
    let err = run(b"X\xff\xff\xff\xff").unwrap_err().to_string();
    assert!(err.contains("only 0 remain"), "{err}");
    assert!(run(b"\x8d\xff\xff\xff\xff\xff\xff\xff\x7f").is_err());
    assert!(run(b"").is_err());
    assert!(run(b"(").is_err(), "no STOP");
    assert!(run(b"s.").is_err(), "stack underflow");
}

#[test]
fn deep_nesting_and_memo_bombs_are_bounded() {
    // ] ] a ] a ... : lists nested 1000 deep.
    let mut deep = b"]".to_vec();
    for _ in 0..1000 {
        deep.extend_from_slice(b"]");
    }
    for _ in 0..1000 {
        deep.extend_from_slice(b"a");
    }
    deep.push(b'.');
    assert!(run(&deep).unwrap_err().to_string().contains("nest deeper"));
    // Doubling through the memo shares, it does not copy: 2^60 leaves
    // would not fit in memory, and this returns at once.
    let bomb = |levels: usize| {
        let mut bytes = b"]q\x00".to_vec();
        for _ in 0..levels {
            bytes.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        bytes.push(b'.');
        bytes
    };
    assert!(run(&bomb(60)).is_ok());
    let err = run(&bomb(100)).unwrap_err().to_string();
    assert!(err.contains("nest deeper"), "{err}");
}

#[test]
fn plain_values_and_ordered_dicts_load() {
    // OrderedDict() with two items and a BUILD of its metadata.
    let pickle = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aK\x07X\x01\x00\x00\x00bG?\xf8\x00\x00\x00\x00\x00\x00u}b.";
    let Value::Dict(dict) = run(pickle).unwrap() else {
        panic!("not a dict")
    };
    assert_eq!(dict.items.len(), 2);
    assert_eq!(dict.items[0].0.as_str(), Some("a"));
    assert_eq!(dict.items[0].1.as_int(), Some(7));
    assert!(matches!(dict.items[1].1, Value::Float(f) if f == 1.5));
}

#[test]
fn tensors_must_lie_inside_their_storage() {
    let storage = Rc::new(StorageRef {
        dtype: StorageType::F32,
        key: "0".into(),
        numel: 6,
        base: 0,
    });
    let ints = |v: &[i64]| tuple(v.iter().map(|&i| Value::Int(i)).collect()).unwrap();
    let args = |offset, shape: &[i64], stride: &[i64]| {
        vec![
            Value::Storage(storage.clone()),
            Value::Int(offset),
            ints(shape),
            ints(stride),
        ]
    };
    assert!(rebuild_tensor(&args(0, &[2, 3], &[3, 1])).is_ok());
    // The transpose view of the same storage.
    assert!(rebuild_tensor(&args(0, &[3, 2], &[1, 3])).is_ok());
    assert!(rebuild_tensor(&args(1, &[2, 3], &[3, 1])).is_err());
    assert!(rebuild_tensor(&args(0, &[2, 4], &[3, 1])).is_err());
    assert!(rebuild_tensor(&args(0, &[i64::MAX, 2], &[i64::MAX, 1])).is_err());
    assert!(rebuild_tensor(&args(-1, &[1], &[1])).is_err());
    assert!(rebuild_tensor(&args(99, &[0, 3], &[3, 1])).is_ok(), "empty");
    // A broadcast view (stride 0) of the storage: materialized, it would
    // take any amount of memory from a few bytes of file.
    assert!(rebuild_tensor(&args(0, &[2, 3], &[0, 1])).is_ok(), "fits");
    let err = rebuild_tensor(&args(0, &[1 << 40, 6], &[0, 1])).unwrap_err();
    assert!(err.to_string().contains("repeats elements"), "{err}");
}

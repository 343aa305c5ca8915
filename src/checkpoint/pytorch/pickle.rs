//! A restricted unpickler: it reads the pickles `torch.save` writes for a
//! state dict and nothing else.
//!
//! Python's `pickle` runs code: `GLOBAL os system` followed by `REDUCE`
//! calls `os.system(...)`. This machine never calls anything. Globals are
//! looked up in a fixed list of what torch writes for tensors
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `_rebuild_parameter`, the `torch.*Storage` types); any other global is
//! refused with an error naming it, before anything else happens. `REDUCE`
//! only "calls" those few entries, by building plain values.
//!
//! Every length is checked against the bytes left in the input before
//! anything is allocated, containers are shared (`Rc`) rather than copied
//! when the memo repeats them, and nesting is capped, so no input can make
//! the reader allocate more than the file holds or overflow the stack.

use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::io::BufRead;
use std::rc::Rc;

/// How deep containers may nest; a state dict needs 4.
const MAX_DEPTH: u32 = 64;

/// The element types of torch's typed storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageType {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// The callables and classes a state-dict pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    Storage(StorageType),
}

impl Global {
    /// The allow-list; everything else is refused.
    fn lookup(module: &str, name: &str) -> Option<Self> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Self::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Self::RebuildTensorV2),
            ("torch._utils", "_rebuild_tensor") => Some(Self::RebuildTensor),
            ("torch._utils", "_rebuild_parameter") => Some(Self::RebuildParameter),
            ("torch", class) => StorageType::from_class(class).map(Self::Storage),
            _ => None,
        }
    }
}

/// A storage as the pickle refers to it (its bytes live elsewhere in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    pub(crate) dtype: StorageType,
    /// The key of its bytes: `data/<key>` in a zip file, the key list in a legacy one.
    pub(crate) key: String,
    /// Elements the storage holds, as the pickle says (checked against the file later).
    pub(crate) numel: usize,
    /// Legacy storage views: the element offset inside the root storage.
    pub(crate) base: usize,
}

/// A tensor: a strided window onto a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    pub(crate) storage: Rc<StorageRef>,
    /// Offset in elements, from the start of the storage's bytes.
    pub(crate) offset: usize,
    pub(crate) shape: Vec<usize>,
    pub(crate) stride: Vec<usize>,
}

impl TensorRef {
    /// Elements from `offset` up to the last one the tensor touches (0 when empty).
    pub(crate) fn span(&self) -> usize {
        if self.shape.contains(&0) {
            return 0;
        }
        1 + self
            .shape
            .iter()
            .zip(&self.stride)
            .map(|(n, s)| (n - 1) * s)
            .sum::<usize>()
    }

    pub(crate) fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (n, s) in self.shape.iter().zip(&self.stride).rev() {
            if *n != 1 && *s != expected {
                return false;
            }
            expected *= n;
        }
        true
    }
}

/// A container and how deep the values inside it nest.
#[derive(Debug, Clone)]
pub(crate) struct Seq<T> {
    pub(crate) items: Rc<Vec<T>>,
    depth: u32,
}

impl<T> Seq<T> {
    fn new(items: Vec<T>, depth: u32) -> Self {
        Self {
            items: Rc::new(items),
            depth,
        }
    }
}

/// What the unpickler builds.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    // Parsed to keep the stack right; a state dict's tensors never need it.
    #[allow(dead_code)]
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Seq<Value>),
    List(Seq<Value>),
    Dict(Seq<(Value, Value)>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(s) => s.depth,
            _ => 0,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    pub(crate) fn as_usize(&self) -> Option<usize> {
        self.as_int().and_then(|i| usize::try_from(i).ok())
    }

    /// The items of a tuple or list.
    pub(crate) fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(s) | Value::List(s) => Some(&s.items),
            _ => None,
        }
    }
}

fn tuple(items: Vec<Value>) -> Result<Value> {
    let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        bail!("containers nest deeper than {MAX_DEPTH} levels");
    }
    Ok(Value::Tuple(Seq::new(items, depth)))
}

/// Input with a known number of bytes left, so no length read from the file
/// can make us allocate more than the file holds.
pub(crate) struct Input<'a> {
    reader: &'a mut dyn BufRead,
    remaining: u64,
    /// Bytes consumed so far.
    pub(crate) pos: u64,
}

impl<'a> Input<'a> {
    pub(crate) fn new(reader: &'a mut dyn BufRead, len: u64) -> Self {
        Self {
            reader,
            remaining: len,
            pos: 0,
        }
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        if n > self.remaining {
            bail!(
                "the pickle asks for {n} bytes at offset {} but only {} remain (truncated or corrupt file)",
                self.pos,
                self.remaining
            );
        }
        let mut buf = vec![0u8; n as usize];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| anyhow!("read failed at offset {}: {e}", self.pos))?;
        self.remaining -= n;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.bytes(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn line(&mut self) -> Result<String> {
        let mut out = Vec::new();
        loop {
            let b = self.byte()?;
            if b == b'\n' {
                break;
            }
            if out.len() >= 4096 {
                bail!("a text line in the pickle is longer than 4096 bytes");
            }
            out.push(b);
        }
        String::from_utf8(out).map_err(|_| anyhow!("a text line in the pickle is not UTF-8"))
    }

    fn text(&mut self, n: u64) -> Result<Rc<str>> {
        let bytes = self.bytes(n)?;
        String::from_utf8(bytes)
            .map(Rc::from)
            .map_err(|_| anyhow!("a string in the pickle is not UTF-8"))
    }
}

/// Turns a persistent id (the tuple torch writes for a storage) into a value.
pub(crate) type PersistentLoad<'a> = &'a mut dyn FnMut(Value) -> Result<Value>;

/// Reads one pickle (up to its STOP opcode) and returns its value.
pub(crate) fn load(input: &mut Input, persistent: PersistentLoad) -> Result<Value> {
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u64, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| anyhow!("pickle stack underflow"));
    let pop_mark = |stack: &mut Vec<Value>, marks: &mut Vec<usize>| -> Result<Vec<Value>> {
        let mark = marks.pop().ok_or_else(|| anyhow!("pickle MARK missing"))?;
        if mark > stack.len() {
            bail!("pickle MARK beyond the stack");
        }
        Ok(stack.split_off(mark))
    };
    loop {
        let at = input.pos;
        let op = input.byte()?;
        match op {
            0x80 => {
                // PROTO
                let version = input.byte()?;
                if version > 5 {
                    bail!("pickle protocol {version} is not supported");
                }
            }
            0x95 => {
                // FRAME: a length hint only.
                input.array::<8>()?;
            }
            b'.' => return pop(&mut stack),
            b'(' => marks.push(stack.len()),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(input.byte()? as i64)),
            b'M' => stack.push(Value::Int(u16::from_le_bytes(input.array()?) as i64)),
            b'J' => stack.push(Value::Int(i32::from_le_bytes(input.array()?) as i64)),
            0x8a => {
                // LONG1
                let n = input.byte()? as u64;
                stack.push(long(&input.bytes(n)?)?);
            }
            0x8b => {
                // LONG4
                let n = u32::from_le_bytes(input.array()?) as u64;
                stack.push(long(&input.bytes(n)?)?);
            }
            b'I' => {
                let line = input.line()?;
                stack.push(match line.as_str() {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    s => Value::Int(s.parse().map_err(|_| anyhow!("bad INT '{s}' in pickle"))?),
                });
            }
            b'L' => {
                let line = input.line()?;
                let s = line.trim_end_matches('L');
                stack.push(Value::Int(
                    s.parse().map_err(|_| anyhow!("bad LONG '{s}' in pickle"))?,
                ));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(input.array()?))),
            b'X' => {
                let n = u32::from_le_bytes(input.array()?) as u64;
                stack.push(Value::Str(input.text(n)?));
            }
            0x8c => {
                let n = input.byte()? as u64;
                stack.push(Value::Str(input.text(n)?));
            }
            0x8d => {
                let n = u64::from_le_bytes(input.array()?);
                stack.push(Value::Str(input.text(n)?));
            }
            b'T' | b'B' => {
                let n = u32::from_le_bytes(input.array()?) as u64;
                stack.push(Value::Bytes(input.bytes(n)?.into()));
            }
            b'U' | b'C' => {
                let n = input.byte()? as u64;
                stack.push(Value::Bytes(input.bytes(n)?.into()));
            }
            b')' => stack.push(tuple(Vec::new())?),
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    bail!("pickle stack underflow");
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(tuple(items)?);
            }
            b't' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(tuple(items)?);
            }
            b']' => stack.push(Value::List(Seq::new(Vec::new(), 1))),
            b'l' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
                check_depth(depth)?;
                stack.push(Value::List(Seq::new(items, depth)));
            }
            b'}' => stack.push(Value::Dict(Seq::new(Vec::new(), 1))),
            b'd' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                let mut dict = Value::Dict(Seq::new(Vec::new(), 1));
                set_items(&mut dict, items)?;
                stack.push(dict);
            }
            b'a' => {
                let item = pop(&mut stack)?;
                append(stack.last_mut(), vec![item])?;
            }
            b'e' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                append(stack.last_mut(), items)?;
            }
            b's' => {
                let value = pop(&mut stack)?;
                let key = pop(&mut stack)?;
                let target = stack
                    .last_mut()
                    .ok_or_else(|| anyhow!("SETITEM on nothing"))?;
                set_items(target, vec![key, value])?;
            }
            b'u' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                let target = stack
                    .last_mut()
                    .ok_or_else(|| anyhow!("SETITEMS on nothing"))?;
                set_items(target, items)?;
            }
            b'q' => {
                let key = input.byte()? as u64;
                memo.insert(key, top(&stack)?);
            }
            b'r' => {
                let key = u32::from_le_bytes(input.array()?) as u64;
                memo.insert(key, top(&stack)?);
            }
            b'p' => {
                let key = input.line()?;
                let key = key.parse().map_err(|_| anyhow!("bad PUT key in pickle"))?;
                memo.insert(key, top(&stack)?);
            }
            0x94 => {
                // MEMOIZE
                let key = memo.len() as u64;
                memo.insert(key, top(&stack)?);
            }
            b'h' | b'j' | b'g' => {
                let key = match op {
                    b'h' => input.byte()? as u64,
                    b'j' => u32::from_le_bytes(input.array()?) as u64,
                    _ => input
                        .line()?
                        .parse()
                        .map_err(|_| anyhow!("bad GET key in pickle"))?,
                };
                let value = memo
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| anyhow!("pickle memo has no entry {key}"))?;
                stack.push(value);
            }
            b'c' => {
                let module = input.line()?;
                let name = input.line()?;
                stack.push(global(&module, &name)?);
            }
            0x93 => {
                // STACK_GLOBAL
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module.as_str(), name.as_str()) {
                    (Some(module), Some(name)) => stack.push(global(module, name)?),
                    _ => bail!("STACK_GLOBAL needs two strings"),
                }
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                stack.push(reduce(func, args)?);
            }
            0x81 => {
                // NEWOBJ: cls.__new__(cls, *args)
                let args = pop(&mut stack)?;
                let cls = pop(&mut stack)?;
                stack.push(reduce(cls, args)?);
            }
            b'b' => {
                // BUILD: the state of an OrderedDict (its `_metadata`) or of a
                // tensor (`requires_grad` etc.) changes no tensor data.
                pop(&mut stack)?;
                match stack.last() {
                    Some(Value::Dict(_) | Value::Tensor(_)) => {}
                    Some(other) => bail!("BUILD on a {}", other.kind()),
                    None => bail!("BUILD on nothing"),
                }
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent(pid)?);
            }
            b'P' => {
                let pid = input.line()?;
                stack.push(persistent(Value::Str(pid.into()))?);
            }
            0x30 => {
                pop(&mut stack)?;
            }
            other => bail!("unsupported pickle opcode 0x{other:02x} at byte {at}"),
        }
    }
}

fn check_depth(depth: u32) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!("containers nest deeper than {MAX_DEPTH} levels");
    }
    Ok(())
}

fn top(stack: &[Value]) -> Result<Value> {
    stack
        .last()
        .cloned()
        .ok_or_else(|| anyhow!("pickle memo store on an empty stack"))
}

fn append(target: Option<&mut Value>, items: Vec<Value>) -> Result<()> {
    match target {
        Some(Value::List(list)) => {
            let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
            check_depth(depth)?;
            list.depth = list.depth.max(depth);
            Rc::make_mut(&mut list.items).extend(items);
            Ok(())
        }
        Some(other) => bail!("APPEND to a {}", other.kind()),
        None => bail!("APPEND to nothing"),
    }
}

fn set_items(target: &mut Value, items: Vec<Value>) -> Result<()> {
    let Value::Dict(dict) = target else {
        bail!("SETITEM on a {}", target.kind());
    };
    if !items.len().is_multiple_of(2) {
        bail!("SETITEMS with an odd number of values");
    }
    let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
    check_depth(depth)?;
    dict.depth = dict.depth.max(depth);
    let entries = Rc::make_mut(&mut dict.items);
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        entries.push((key, value));
    }
    Ok(())
}

fn long(bytes: &[u8]) -> Result<Value> {
    if bytes.is_empty() {
        return Ok(Value::Int(0));
    }
    if bytes.len() > 8 {
        // Only the legacy format's magic number is this large; keep its low
        // 64 bits with a marker the caller compares whole.
        if bytes.len() <= 16 {
            let mut buf = [0u8; 16];
            buf[..bytes.len()].copy_from_slice(bytes);
            return Ok(Value::Bytes(Rc::from(&buf[..])));
        }
        bail!("integer of {} bytes in the pickle", bytes.len());
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(Value::Int(i64::from_le_bytes(buf)))
}

fn global(module: &str, name: &str) -> Result<Value> {
    Global::lookup(module, name).map(Value::Global).ok_or_else(|| {
        anyhow!(
            "refused: the pickle names `{module}.{name}`, which a PyTorch state dict never does (only tensors are read, no code is run)"
        )
    })
}

fn reduce(func: Value, args: Value) -> Result<Value> {
    let Value::Global(global) = func else {
        bail!(
            "the pickle calls a {}, not an allowed function",
            func.kind()
        );
    };
    let args = args
        .as_seq()
        .ok_or_else(|| anyhow!("arguments of a call must be a tuple"))?;
    match global {
        Global::OrderedDict => {
            if !args.is_empty() {
                bail!("OrderedDict() with arguments");
            }
            Ok(Value::Dict(Seq::new(Vec::new(), 1)))
        }
        Global::RebuildTensorV2 | Global::RebuildTensor => rebuild_tensor(args),
        Global::RebuildParameter => match args.first() {
            Some(tensor @ Value::Tensor(_)) => Ok(tensor.clone()),
            _ => bail!("_rebuild_parameter without a tensor"),
        },
        Global::Storage(_) => bail!("the pickle constructs a storage directly"),
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`, checked
/// against the storage's length.
fn rebuild_tensor(args: &[Value]) -> Result<Value> {
    let bad = |why: &str| anyhow!("bad tensor in the pickle: {why}");
    let Some(Value::Storage(storage)) = args.first() else {
        return Err(bad("no storage"));
    };
    let offset = args
        .get(1)
        .and_then(Value::as_usize)
        .ok_or_else(|| bad("offset"))?;
    let dims = |value: Option<&Value>, what: &str| -> Result<Vec<usize>> {
        value
            .and_then(Value::as_seq)
            .ok_or_else(|| bad(what))?
            .iter()
            .map(|d| d.as_usize().ok_or_else(|| bad(what)))
            .collect()
    };
    let shape = dims(args.get(2), "size")?;
    let stride = dims(args.get(3), "stride")?;
    if shape.len() != stride.len() || shape.len() > 16 {
        return Err(bad("size and stride disagree"));
    }
    // Checked arithmetic: the largest element index must lie in the storage.
    let start = offset
        .checked_add(storage.base)
        .ok_or_else(|| bad("offset overflows"))?;
    let mut last = Some(start);
    let mut empty = false;
    for (n, s) in shape.iter().zip(&stride) {
        if *n == 0 {
            empty = true;
        } else {
            last = last.and_then(|l| (n - 1).checked_mul(*s).and_then(|step| l.checked_add(step)));
        }
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, n| acc.checked_mul(*n))
        .ok_or_else(|| bad("too many elements"))?;
    // A view that repeats elements (a stride of 0, overlapping strides)
    // would be materialized at its full size: a few bytes of file could ask
    // for any amount of memory. State dicts hold no such views.
    if numel > storage.numel.saturating_add(storage.base) {
        return Err(bad(&format!(
            "it repeats elements of its storage ({numel} elements from {}); save it with .contiguous()",
            storage.numel + storage.base
        )));
    }
    let last = last.ok_or_else(|| bad("offset overflows"))?;
    if !empty && last >= storage.numel + storage.base {
        return Err(bad(&format!(
            "it reaches element {last} of a storage of {}",
            storage.numel + storage.base
        )));
    }
    Ok(Value::Tensor(Rc::new(TensorRef {
        storage: storage.clone(),
        offset: start,
        shape,
        stride,
    })))
}

/// Decodes the storage persistent id torch writes:
/// `('storage', <torch.XStorage>, key, location, numel[, view_metadata])`.
pub(crate) fn storage_from_pid(pid: &Value) -> Result<StorageRef> {
    let bad = || anyhow!("bad storage reference in the pickle");
    let items = pid.as_seq().ok_or_else(bad)?;
    if items.first().and_then(Value::as_str) != Some("storage") || items.len() < 5 {
        return Err(bad());
    }
    let Some(Value::Global(Global::Storage(dtype))) = items.get(1) else {
        return Err(bad());
    };
    let key = match &items[2] {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        _ => return Err(bad()),
    };
    let numel = items[4].as_usize().ok_or_else(bad)?;
    let mut storage = StorageRef {
        dtype: *dtype,
        key,
        numel,
        base: 0,
    };
    // Legacy views of a storage: (view_key, offset, view_size).
    if let Some(view) = items.get(5).and_then(Value::as_seq) {
        let offset = view.get(1).and_then(Value::as_usize).ok_or_else(bad)?;
        let size = view.get(2).and_then(Value::as_usize).ok_or_else(bad)?;
        if offset.checked_add(size).is_none_or(|end| end > numel) {
            return Err(bad());
        }
        storage.base = offset;
        storage.numel = size;
    }
    Ok(storage)
}

#[cfg(test)]
#[path = "pickle_tests.rs"]
mod tests;

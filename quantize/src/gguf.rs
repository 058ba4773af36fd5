//! GGUF v2/v3 reader (spec: ggml `docs/gguf.md`). Metadata and the tensor directory are read
//! once through a buffered reader that checks every count and length against the bytes left in
//! the file before allocating; tensor data is read one tensor at a time on demand.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use autark_kernels::DType;

use crate::error::{io_err, QuantizeError, Result};

const GGUF_MAGIC: u32 = u32::from_le_bytes(*b"GGUF");
const DEFAULT_ALIGNMENT: u64 = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => self.as_u64().map(|v| v as f32),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GgufTensor {
    pub name: String,
    /// ggml type code as stored.
    pub type_code: u32,
    /// numpy order (outermost first), i.e. GGUF's `ne` reversed.
    pub shape: Vec<usize>,
    /// Absolute offset in the file.
    pub offset: u64,
    pub nbytes: u64,
}

impl GgufTensor {
    pub fn dtype(&self) -> Result<DType> {
        DType::try_from(self.type_code).map_err(|_| QuantizeError::UnsupportedType {
            name: self.name.clone(),
            what: format!("ggml type {}", self.type_code),
        })
    }
}

#[derive(Debug)]
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub kv: BTreeMap<String, Value>,
    pub tensors: Vec<GgufTensor>,
    file_len: u64,
}

struct Rd {
    r: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Rd {
    fn bytes(&mut self, n: u64, what: &'static str) -> Result<Vec<u8>> {
        if n > self.len - self.pos {
            return Err(QuantizeError::GgufTruncated { what, offset: self.pos });
        }
        let mut v = vec![0u8; n as usize];
        self.r.read_exact(&mut v).map_err(|_| QuantizeError::GgufTruncated { what, offset: self.pos })?;
        self.pos += n;
        Ok(v)
    }
    fn arr<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        if (N as u64) > self.len - self.pos {
            return Err(QuantizeError::GgufTruncated { what, offset: self.pos });
        }
        self.r.read_exact(&mut b).map_err(|_| QuantizeError::GgufTruncated { what, offset: self.pos })?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &'static str) -> Result<String> {
        let n = self.u64(what)?;
        let b = self.bytes(n, what)?;
        String::from_utf8(b).map_err(|_| QuantizeError::GgufInvalid(format!("{what} is not UTF-8")))
    }
    /// Guards an element count: `count` elements of at least `min_size` bytes must fit.
    fn check_count(&self, count: u64, min_size: u64, what: &'static str) -> Result<()> {
        let limit = (self.len - self.pos) / min_size.max(1);
        if count > limit {
            return Err(QuantizeError::GgufLimit { what, value: count, limit });
        }
        Ok(())
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>("u8")?[0]),
            1 => Value::I8(self.arr::<1>("i8")?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr("u16")?)),
            3 => Value::I16(i16::from_le_bytes(self.arr("i16")?)),
            4 => Value::U32(self.u32("u32")?),
            5 => Value::I32(i32::from_le_bytes(self.arr("i32")?)),
            6 => Value::F32(f32::from_le_bytes(self.arr("f32")?)),
            7 => Value::Bool(self.arr::<1>("bool")?[0] != 0),
            8 => Value::Str(self.string("string value")?),
            9 => {
                if depth > 2 {
                    return Err(QuantizeError::GgufInvalid("arrays nested too deeply".into()));
                }
                let ety = self.u32("array type")?;
                let n = self.u64("array length")?;
                let min = match ety {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => return Err(QuantizeError::GgufValueType(other)),
                };
                self.check_count(n, min, "array length")?;
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64("u64")?),
            11 => Value::I64(i64::from_le_bytes(self.arr("i64")?)),
            12 => Value::F64(f64::from_le_bytes(self.arr("f64")?)),
            other => return Err(QuantizeError::GgufValueType(other)),
        })
    }
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Gguf> {
        let f = File::open(path).map_err(io_err(path))?;
        let len = f.metadata().map_err(io_err(path))?.len();
        let mut rd = Rd { r: BufReader::with_capacity(1 << 16, f), pos: 0, len };
        let magic = rd.u32("magic")?;
        if magic != GGUF_MAGIC {
            return Err(QuantizeError::GgufMagic(magic));
        }
        let version = rd.u32("version")?;
        if version != 2 && version != 3 {
            return Err(QuantizeError::GgufVersion(version));
        }
        let n_tensors = rd.u64("tensor count")?;
        let n_kv = rd.u64("metadata count")?;
        // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor entry
        // at least 8 + 4 + 8 + 4 + 8.
        rd.check_count(n_kv, 13, "metadata count")?;
        let mut kv = BTreeMap::new();
        for _ in 0..n_kv {
            let key = rd.string("metadata key")?;
            let ty = rd.u32("metadata type")?;
            let v = rd.value(ty, 0)?;
            kv.insert(key, v);
        }
        rd.check_count(n_tensors, 32, "tensor count")?;
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = rd.string("tensor name")?;
            let n_dims = rd.u32("tensor dims")?;
            if n_dims == 0 || n_dims > 4 {
                return Err(QuantizeError::GgufInvalid(format!("tensor {name}: {n_dims} dimensions")));
            }
            let mut ne = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = rd.u64("tensor dim")?;
                if d == 0 || d > len.saturating_mul(2) {
                    return Err(QuantizeError::GgufInvalid(format!("tensor {name}: dimension {d}")));
                }
                ne.push(d as usize);
            }
            let type_code = rd.u32("tensor type")?;
            let offset = rd.u64("tensor offset")?;
            raw.push((name, ne, type_code, offset));
        }
        let alignment = kv.get("general.alignment").and_then(Value::as_u64).unwrap_or(DEFAULT_ALIGNMENT);
        if alignment == 0 || !alignment.is_power_of_two() || alignment > 1 << 20 {
            return Err(QuantizeError::GgufInvalid(format!("general.alignment {alignment}")));
        }
        let data_start = rd.pos.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, ne, type_code, rel) in raw {
            let shape: Vec<usize> = ne.iter().rev().copied().collect();
            let nbytes = match DType::try_from(type_code) {
                Ok(dt) => autark_format::tensor_nbytes(dt, &shape)
                    .map_err(|e| QuantizeError::GgufInvalid(format!("tensor {name}: {e}")))?,
                // Unknown types are listed (the import fails only if the tensor is needed).
                Err(_) => 0,
            };
            let offset = data_start
                .checked_add(rel)
                .filter(|o| o.checked_add(nbytes).is_some_and(|e| e <= len))
                .ok_or_else(|| {
                    QuantizeError::GgufInvalid(format!(
                        "tensor {name}: data at {rel}+{nbytes} lies past the end of the file"
                    ))
                })?;
            tensors.push(GgufTensor { name, type_code, shape, offset, nbytes });
        }
        let mut by_offset: Vec<&GgufTensor> = tensors.iter().filter(|t| t.nbytes > 0).collect();
        by_offset.sort_by_key(|t| t.offset);
        for w in by_offset.windows(2) {
            if w[0].offset + w[0].nbytes > w[1].offset {
                return Err(QuantizeError::GgufInvalid(format!("tensors {} and {} overlap", w[0].name, w[1].name)));
            }
        }
        Ok(Gguf { path: path.to_path_buf(), version, kv, tensors, file_len: len })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Reads one tensor's bytes.
    pub fn read(&self, t: &GgufTensor) -> Result<Vec<u8>> {
        t.dtype()?;
        if t.offset + t.nbytes > self.file_len {
            return Err(QuantizeError::GgufTruncated { what: "tensor data", offset: t.offset });
        }
        let mut f = File::open(&self.path).map_err(io_err(&self.path))?;
        f.seek(SeekFrom::Start(t.offset)).map_err(io_err(&self.path))?;
        let mut buf = vec![0u8; t.nbytes as usize];
        f.read_exact(&mut buf).map_err(io_err(&self.path))?;
        Ok(buf)
    }
}

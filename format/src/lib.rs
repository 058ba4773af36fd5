//! Spec: docs/FORMAT.md
//!
//! autark-format owns the `.autark` byte layout: `Writer` (streams tensors into a temporary
//! file, renames it into place when complete) and `AutarkFile` (maps a file with `memmap2` and
//! validates header, metadata, table, bounds, overlaps and sizes before anything is used).
//! `unsafe` here is limited to creating the mapping, and to viewing the anonymous mappings of
//! `pages` (the KV cache's memory) as typed slices.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use autark_kernels::{DType, TensorLayout};
use sha2::{Digest, Sha256};

pub mod arch;
mod meta;
pub mod pages;
pub use arch::{expected_tensors, Architecture, ExpectedTensor, Role};
pub use meta::{
    Conformance, ConformanceProbe, FfnActivation, Metadata, ModelConfig, Provenance, RopeLayout, RopeScaling,
    SourceFile, TokenizerMeta,
};

/// "ATRK" as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"ATRK");
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 3;
pub const HEADER_LEN: usize = 128;
/// Alignment of the data section and of every tensor.
pub const ALIGN: u64 = 64;
/// Bytes of the smallest table entry (a 1-byte name, one dimension).
pub const MIN_ENTRY_LEN: usize = 4 + 1 + 4 + 4 + 4 + 8 + 8 + 8 + 32;
pub const MAX_DIMS: usize = 4;
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    // ---- the file itself -------------------------------------------------------------------
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("file too short: {len} bytes, a header needs {HEADER_LEN}")]
    TooShort { len: u64 },
    #[error("not an .autark file (magic {got:#010x}, expected {MAGIC:#010x})")]
    BadMagic { got: u32 },
    #[error("file format version {major}.{minor} is newer than this reader ({VERSION_MAJOR}.x); upgrade autark")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error(
        "tensor {name}: format {major}.{minor} ordered the bytes of rows16 q6_k blocks in a way this reader no \
         longer reads (1.3 changed it); quantize the source again with `autark quantize`"
    )]
    RetiredLayout { name: String, major: u16, minor: u16 },
    #[error("header field {field} is {got}, expected {expected}")]
    BadHeader { field: &'static str, got: u64, expected: u64 },
    #[error("section {section} ({offset}..+{len}) lies outside the file or out of order (file is {file_len} bytes)")]
    SectionBounds { section: &'static str, offset: u64, len: u64, file_len: u64 },
    #[error("header checksum mismatch: metadata or tensor table is corrupted")]
    HeaderChecksum,
    // ---- metadata ---------------------------------------------------------------------------
    #[error("metadata JSON is invalid: {0}")]
    Metadata(#[from] serde_json::Error),
    #[error("metadata: {0}")]
    MetadataValue(String),
    // ---- the tensor table -------------------------------------------------------------------
    #[error("tensor table: {count} entries cannot fit in {table_len} bytes")]
    TooManyTensors { count: u64, table_len: u64 },
    #[error("tensor table entry {index} is truncated")]
    TruncatedEntry { index: usize },
    #[error("tensor table entry {index}: {what}")]
    BadEntry { index: usize, what: String },
    #[error("tensor {name}: {what}")]
    BadTensor { name: String, what: String },
    #[error("tensors {a} and {b} overlap")]
    Overlap { a: String, b: String },
    #[error("duplicate tensor name {0}")]
    DuplicateName(String),
    #[error("tensor table has {got} bytes left over after {count} entries")]
    TrailingTable { count: u64, got: usize },
    // ---- writing ------------------------------------------------------------------------------
    #[error("writer: expected tensor {expected}, got {got}")]
    WriteOrder { expected: String, got: String },
    #[error("writer: tensor {name} has {got} bytes, its shape and dtype need {expected}")]
    WriteSize { name: String, expected: u64, got: u64 },
    #[error("writer: {written} of {total} tensors written")]
    Incomplete { written: usize, total: usize },
    #[error("kernel: {0}")]
    Kernel(#[from] autark_kernels::KernelError),
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FormatError + '_ {
    move |source| FormatError::Io { path: path.to_path_buf(), source }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    /// Block order inside the tensor (docs/FORMAT.md "Layouts").
    pub layout: TensorLayout,
    /// Outermost first; the last dimension is contiguous.
    pub shape: Vec<usize>,
    /// Absolute offset in the file.
    pub offset: u64,
    pub nbytes: u64,
    pub sha256: [u8; 32],
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What a writer is told before it writes: a tensor's name, type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub layout: TensorLayout,
}

impl TensorSpec {
    /// A row-major tensor.
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<usize>) -> TensorSpec {
        TensorSpec { name: name.into(), dtype, shape, layout: TensorLayout::RowMajor }
    }
}

/// Bytes that `shape` of `dtype` occupy; an error for a shape that is not whole blocks or
/// whose size overflows.
pub fn tensor_nbytes(dtype: DType, shape: &[usize]) -> Result<u64> {
    let (&cols, outer) = shape.split_last().ok_or_else(|| FormatError::MetadataValue("empty shape".into()))?;
    let row = dtype.row_bytes(cols)? as u64;
    outer
        .iter()
        .try_fold(row, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| FormatError::MetadataValue(format!("shape {shape:?} overflows")))
}

fn align_up(v: u64) -> u64 {
    v.div_ceil(ALIGN) * ALIGN
}

// ============================================================================================
// Writer
// ============================================================================================

/// Streams a `.autark` file. Tensors are written in the order of the specs given to
/// `create`; `finish` writes checksums and renames the temporary file over `path`. Dropping an
/// unfinished writer deletes the temporary file; an existing file at `path` is untouched.
pub struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    metadata: Vec<u8>,
    table: Vec<TensorInfo>,
    next: usize,
    pos: u64,
    data_offset: u64,
    finished: bool,
}

impl Writer {
    pub fn create(path: &Path, metadata: &Metadata, specs: &[TensorSpec]) -> Result<Writer> {
        let metadata = serde_json::to_vec(metadata)?;
        Self::create_raw(path, metadata, specs)
    }

    /// As `create`, with metadata bytes as given (for tests of the spec).
    pub fn create_raw(path: &Path, metadata: Vec<u8>, specs: &[TensorSpec]) -> Result<Writer> {
        let mut names = HashSet::new();
        let mut table = Vec::with_capacity(specs.len());
        let table_len: u64 = specs.iter().map(|s| entry_len(&s.name, s.shape.len()) as u64).sum();
        let table_offset = HEADER_LEN as u64 + metadata.len() as u64;
        let data_offset = align_up(table_offset + table_len);
        let mut offset = data_offset;
        for s in specs {
            if s.name.is_empty() || s.name.len() > MAX_NAME_LEN || s.shape.is_empty() || s.shape.len() > MAX_DIMS {
                return Err(FormatError::BadTensor {
                    name: s.name.clone(),
                    what: "name length or rank out of range".into(),
                });
            }
            if !s.dtype.is_native() {
                return Err(FormatError::BadTensor {
                    name: s.name.clone(),
                    what: format!("dtype {} cannot be stored", s.dtype),
                });
            }
            if !names.insert(s.name.clone()) {
                return Err(FormatError::DuplicateName(s.name.clone()));
            }
            s.layout
                .check(s.dtype, &s.shape)
                .map_err(|e| FormatError::BadTensor { name: s.name.clone(), what: e.to_string() })?;
            let nbytes = tensor_nbytes(s.dtype, &s.shape)?;
            table.push(TensorInfo {
                name: s.name.clone(),
                dtype: s.dtype,
                layout: s.layout,
                shape: s.shape.clone(),
                offset,
                nbytes,
                sha256: [0; 32],
            });
            offset = align_up(offset + nbytes);
        }
        let tmp = temp_path(path);
        let file = File::options().write(true).create_new(true).open(&tmp).map_err(io_err(&tmp))?;
        let mut w = Writer {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            metadata,
            table,
            next: 0,
            pos: 0,
            data_offset,
            finished: false,
        };
        // Header and table are written again with their checksums by `finish`.
        let header = [0u8; HEADER_LEN];
        let meta = std::mem::take(&mut w.metadata);
        let table_bytes = encode_table(&w.table);
        w.write_all(&header)?;
        w.write_all(&meta)?;
        w.write_all(&table_bytes)?;
        w.metadata = meta;
        Ok(w)
    }

    fn write_all(&mut self, b: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("writer used after finish");
        out.write_all(b).map_err(io_err(&self.tmp))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, target: u64) -> Result<()> {
        const ZEROS: [u8; ALIGN as usize] = [0; ALIGN as usize];
        while self.pos < target {
            let n = ((target - self.pos) as usize).min(ZEROS.len());
            self.write_all(&ZEROS[..n])?;
        }
        Ok(())
    }

    /// The specs still to be written, in order.
    pub fn remaining(&self) -> &[TensorInfo] {
        &self.table[self.next..]
    }

    /// Writes the next tensor's bytes; `name` must be the next spec's name.
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let Some(t) = self.table.get(self.next) else {
            return Err(FormatError::WriteOrder { expected: "<none>".into(), got: name.into() });
        };
        if t.name != name {
            return Err(FormatError::WriteOrder { expected: t.name.clone(), got: name.into() });
        }
        if t.nbytes != bytes.len() as u64 {
            return Err(FormatError::WriteSize { name: name.into(), expected: t.nbytes, got: bytes.len() as u64 });
        }
        let offset = t.offset;
        self.pad_to(offset)?;
        self.write_all(bytes)?;
        self.table[self.next].sha256 = Sha256::digest(bytes).into();
        self.next += 1;
        Ok(())
    }

    /// Writes checksums, flushes, and renames the file into place.
    pub fn finish(mut self) -> Result<()> {
        if self.next != self.table.len() {
            return Err(FormatError::Incomplete { written: self.next, total: self.table.len() });
        }
        let end = self.table.last().map(|t| t.offset + t.nbytes).unwrap_or(self.data_offset).max(self.data_offset);
        self.pad_to(end)?;
        let table_bytes = encode_table(&self.table);
        let mut h = Sha256::new();
        h.update(&self.metadata);
        h.update(&table_bytes);
        let header = encode_header(
            self.metadata.len() as u64,
            &table_bytes,
            self.table.len() as u64,
            self.data_offset,
            end - self.data_offset,
            h.finalize().into(),
        );
        let tmp = self.tmp.clone();
        let mut out = self.out.take().expect("writer used after finish");
        let r = (|| -> std::io::Result<File> {
            out.seek(SeekFrom::Start(0))?;
            out.write_all(&header)?;
            out.seek(SeekFrom::Start(HEADER_LEN as u64 + self.metadata.len() as u64))?;
            out.write_all(&table_bytes)?;
            let f = out.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            Ok(f)
        })();
        r.map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        self.finished = true;
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Best effort: persist the rename itself.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.finished {
            self.out.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn entry_len(name: &str, n_dims: usize) -> usize {
    4 + name.len() + 4 + 4 + 4 + 8 * n_dims + 8 + 8 + 32
}

fn encode_table(table: &[TensorInfo]) -> Vec<u8> {
    let mut b = Vec::new();
    for t in table {
        b.extend_from_slice(&(t.name.len() as u32).to_le_bytes());
        b.extend_from_slice(t.name.as_bytes());
        b.extend_from_slice(&(t.dtype as u32).to_le_bytes());
        b.extend_from_slice(&(t.layout as u32).to_le_bytes());
        b.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for &d in &t.shape {
            b.extend_from_slice(&(d as u64).to_le_bytes());
        }
        b.extend_from_slice(&t.offset.to_le_bytes());
        b.extend_from_slice(&t.nbytes.to_le_bytes());
        b.extend_from_slice(&t.sha256);
    }
    b
}

fn encode_header(
    meta_len: u64,
    table: &[u8],
    count: u64,
    data_offset: u64,
    data_len: u64,
    sha: [u8; 32],
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..6].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    h[6..8].copy_from_slice(&VERSION_MINOR.to_le_bytes());
    h[8..12].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    h[12..16].copy_from_slice(&(ALIGN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&(HEADER_LEN as u64).to_le_bytes());
    h[24..32].copy_from_slice(&meta_len.to_le_bytes());
    h[32..40].copy_from_slice(&(HEADER_LEN as u64 + meta_len).to_le_bytes());
    h[40..48].copy_from_slice(&(table.len() as u64).to_le_bytes());
    h[48..56].copy_from_slice(&count.to_le_bytes());
    h[56..64].copy_from_slice(&data_offset.to_le_bytes());
    h[64..72].copy_from_slice(&data_len.to_le_bytes());
    h[72..104].copy_from_slice(&sha);
    h
}

// ============================================================================================
// Reader
// ============================================================================================

/// The parsed, validated structure of a file (independent of where its bytes live).
#[derive(Debug, Clone)]
pub struct Layout {
    pub version: (u16, u16),
    pub metadata: Metadata,
    pub metadata_bytes: std::ops::Range<usize>,
    pub tensors: Vec<TensorInfo>,
    pub data_offset: u64,
    pub data_len: u64,
    /// The header's SHA-256 of the metadata and the tensor table (which holds every tensor's
    /// SHA-256): the file's identity, e.g. for binding saved session states to their model.
    pub header_sha256: [u8; 32],
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| u64::from_le_bytes(s.try_into().unwrap()))
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A fresh temporary file name beside `path` (same directory, so that renaming it over `path`
/// is atomic): what every writer of autark writes before it renames its output into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fname = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let nonce =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    dir.join(format!(".{fname}.{}-{nonce}.tmp", std::process::id()))
}

/// Validates `bytes` as a whole `.autark` file (docs/FORMAT.md, "What a reader checks").
pub fn parse(bytes: &[u8]) -> Result<Layout> {
    let file_len = bytes.len() as u64;
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::TooShort { len: file_len });
    }
    let h = &bytes[..HEADER_LEN];
    let magic = u32::from_le_bytes(h[0..4].try_into().unwrap());
    if magic != MAGIC {
        return Err(FormatError::BadMagic { got: magic });
    }
    let major = u16::from_le_bytes([h[4], h[5]]);
    let minor = u16::from_le_bytes([h[6], h[7]]);
    if major != VERSION_MAJOR {
        return Err(FormatError::UnsupportedVersion { major, minor });
    }
    let header_len = u32::from_le_bytes(h[8..12].try_into().unwrap()) as u64;
    if header_len != HEADER_LEN as u64 {
        return Err(FormatError::BadHeader { field: "header_len", got: header_len, expected: HEADER_LEN as u64 });
    }
    let align = u32::from_le_bytes(h[12..16].try_into().unwrap()) as u64;
    if align != ALIGN {
        return Err(FormatError::BadHeader { field: "alignment", got: align, expected: ALIGN });
    }
    let (meta_off, meta_len) = (le_u64(h, 16), le_u64(h, 24));
    let (table_off, table_len) = (le_u64(h, 32), le_u64(h, 40));
    let count = le_u64(h, 48);
    let (data_off, data_len) = (le_u64(h, 56), le_u64(h, 64));
    if meta_off != HEADER_LEN as u64 {
        return Err(FormatError::BadHeader { field: "metadata_offset", got: meta_off, expected: HEADER_LEN as u64 });
    }
    let section = |name, off: u64, len: u64, min_start: u64| {
        let end = off.checked_add(len).filter(|&e| e <= file_len && off >= min_start);
        end.ok_or(FormatError::SectionBounds { section: name, offset: off, len, file_len })
    };
    let meta_end = section("metadata", meta_off, meta_len, HEADER_LEN as u64)?;
    if table_off != meta_end {
        return Err(FormatError::BadHeader { field: "table_offset", got: table_off, expected: meta_end });
    }
    let table_end = section("table", table_off, table_len, meta_end)?;
    if data_off != align_up(table_end) {
        return Err(FormatError::BadHeader { field: "data_offset", got: data_off, expected: align_up(table_end) });
    }
    let data_end = section("data", data_off, data_len, table_end)?;
    if data_end != file_len {
        return Err(FormatError::BadHeader {
            field: "data_len",
            got: data_len,
            expected: file_len.saturating_sub(data_off),
        });
    }
    let meta_bytes = &bytes[meta_off as usize..meta_end as usize];
    let table_bytes = &bytes[table_off as usize..table_end as usize];
    let mut sha = Sha256::new();
    sha.update(meta_bytes);
    sha.update(table_bytes);
    let header_sha256 = <[u8; 32]>::from(sha.finalize());
    if header_sha256 != h[72..104] {
        return Err(FormatError::HeaderChecksum);
    }
    let metadata: Metadata = serde_json::from_slice(meta_bytes)?;
    metadata.validate()?;

    if count > table_len / MIN_ENTRY_LEN as u64 {
        return Err(FormatError::TooManyTensors { count, table_len });
    }
    let mut tensors = Vec::with_capacity(count as usize);
    let mut cur = Cursor { b: table_bytes, pos: 0 };
    let mut names = HashSet::with_capacity(count as usize);
    for index in 0..count as usize {
        let t = parse_entry(&mut cur, index)?;
        let expected = tensor_nbytes(t.dtype, &t.shape)
            .map_err(|e| FormatError::BadTensor { name: t.name.clone(), what: e.to_string() })?;
        if t.nbytes != expected {
            return Err(FormatError::BadTensor {
                name: t.name,
                what: format!("{} bytes, shape and dtype need {expected}", t.nbytes),
            });
        }
        if t.offset % ALIGN != 0 {
            return Err(FormatError::BadTensor {
                name: t.name,
                what: format!("offset {} is not aligned to {ALIGN}", t.offset),
            });
        }
        let inside = t.offset >= data_off && t.offset.checked_add(t.nbytes).is_some_and(|e| e <= data_end);
        if !inside {
            return Err(FormatError::BadTensor {
                name: t.name,
                what: format!("bytes {}..+{} lie outside the data section", t.offset, t.nbytes),
            });
        }
        if !names.insert(t.name.clone()) {
            return Err(FormatError::DuplicateName(t.name));
        }
        tensors.push(t);
    }
    if cur.pos != table_bytes.len() {
        return Err(FormatError::TrailingTable { count, got: table_bytes.len() - cur.pos });
    }
    // Format 1.3 reordered the pieces of rows16 q6_k group blocks (docs/FORMAT.md "Layouts").
    if let Some(t) = tensors.iter().find(|t| minor < 3 && t.dtype == DType::Q6K && t.layout == TensorLayout::Rows16) {
        return Err(FormatError::RetiredLayout { name: t.name.clone(), major, minor });
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    for w in order.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        if a.offset + a.nbytes > b.offset {
            return Err(FormatError::Overlap { a: a.name.clone(), b: b.name.clone() });
        }
    }
    Ok(Layout {
        version: (major, minor),
        metadata,
        metadata_bytes: meta_off as usize..meta_end as usize,
        tensors,
        data_offset: data_off,
        data_len,
        header_sha256,
    })
}

fn parse_entry(cur: &mut Cursor<'_>, index: usize) -> Result<TensorInfo> {
    let trunc = || FormatError::TruncatedEntry { index };
    let bad = |what: String| FormatError::BadEntry { index, what };
    let name_len = cur.u32().ok_or_else(trunc)? as usize;
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return Err(bad(format!("name length {name_len} outside 1..={MAX_NAME_LEN}")));
    }
    let name = std::str::from_utf8(cur.take(name_len).ok_or_else(trunc)?)
        .map_err(|_| bad("name is not UTF-8".into()))?
        .to_string();
    let code = cur.u32().ok_or_else(trunc)?;
    let dtype = DType::try_from(code).map_err(|_| bad(format!("unknown dtype code {code}")))?;
    if !dtype.is_native() {
        return Err(bad(format!("dtype {dtype} cannot be stored in an .autark file")));
    }
    let code = cur.u32().ok_or_else(trunc)?;
    let layout = TensorLayout::try_from(code).map_err(|_| bad(format!("unknown layout {code}")))?;
    let n_dims = cur.u32().ok_or_else(trunc)? as usize;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(bad(format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
    }
    let mut shape = Vec::with_capacity(n_dims);
    for _ in 0..n_dims {
        let d = cur.u64().ok_or_else(trunc)?;
        shape.push(usize::try_from(d).map_err(|_| bad(format!("dimension {d} too large")))?);
    }
    let offset = cur.u64().ok_or_else(trunc)?;
    let nbytes = cur.u64().ok_or_else(trunc)?;
    let sha256: [u8; 32] = cur.take(32).ok_or_else(trunc)?.try_into().unwrap();
    layout.check(dtype, &shape).map_err(|e| bad(e.to_string()))?;
    Ok(TensorInfo { name, dtype, layout, shape, offset, nbytes, sha256 })
}

/// A mapped, validated `.autark` file. Tensor bytes are borrowed straight from the mapping.
///
/// On Linux the mapping is advised `MADV_HUGEPAGE`: where the page cache holds the file in
/// 2 MiB folios (readahead on kernels whose filesystem has large folios, such as ext4 since
/// 6.16) they are mapped whole, and `khugepaged` may collapse the mapping on kernels built with
/// `CONFIG_READ_ONLY_THP_FOR_FS` (it scans only advised regions). Decode streams the weights, and
/// a file mapped in 4 KiB pages streamed at 22 GB/s where the same file in 2 MiB mappings read
/// 29 (BENCHMARKS.md, issue 23). The hint changes no byte and no failure: it is ignored where
/// huge pages are off.
pub struct AutarkFile {
    map: memmap2::Mmap,
    layout: Layout,
    path: PathBuf,
}

impl std::fmt::Debug for AutarkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutarkFile").field("path", &self.path).field("tensors", &self.layout.tensors.len()).finish()
    }
}

impl AutarkFile {
    pub fn open(path: &Path) -> Result<AutarkFile> {
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        if len < HEADER_LEN as u64 {
            return Err(FormatError::TooShort { len });
        }
        // SAFETY: the mapping is read-only and private to this process. Like every mmap-based
        // reader, it assumes no other process truncates or rewrites the file while it is
        // mapped (autark's own writer never does: it renames a new file into place).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage); // a hint (`AutarkFile`'s docs)
        let layout = parse(&map)?;
        Ok(AutarkFile { map, layout, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn metadata(&self) -> &Metadata {
        &self.layout.metadata
    }

    /// The whole file as mapped (its first byte page-aligned): a tensor's bytes lie at
    /// `TensorInfo::offset` inside it. The CUDA backend lets an integrated GPU read the weights
    /// here in place (docs/CUDA.md).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.layout.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.layout.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor of this file (bounds were validated at open).
    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        &self.map[t.offset as usize..(t.offset + t.nbytes) as usize]
    }

    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Writes this file's tensors (bytes, order, types, layouts) under `metadata` to `path`,
    /// through a temporary file renamed into place (`Writer`): how the quantizer adds its
    /// conformance record once the model it describes can run.
    pub fn rewrite(&self, metadata: &Metadata, path: &Path) -> Result<()> {
        let specs: Vec<TensorSpec> = self
            .tensors()
            .iter()
            .map(|t| TensorSpec { layout: t.layout, ..TensorSpec::new(t.name.clone(), t.dtype, t.shape.clone()) })
            .collect();
        let mut w = Writer::create(path, metadata, &specs)?;
        for t in self.tensors() {
            w.write_tensor(&t.name, self.data(t))?;
        }
        w.finish()
    }

    /// Checks every tensor's SHA-256; returns the names of those that do not match.
    pub fn verify(&self) -> Vec<String> {
        self.layout
            .tensors
            .iter()
            .filter(|t| <[u8; 32]>::from(Sha256::digest(self.data(t))) != t.sha256)
            .map(|t| t.name.clone())
            .collect()
    }
}

/// Lower-case hex of bytes (checksums in messages and JSON).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

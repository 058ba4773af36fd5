//! Saved session states (docs/FORMAT.md, "Session state"): a session's tokens, last logits, KV
//! cache in its own types and a suspended generation, bound to the model's identity, written
//! atomically and checked (length, SHA-256, every count) when read back.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use autark_format::{hex, temp_path};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, RuntimeError};
use crate::kv::CacheType;
use crate::model::Model;
use crate::session::{Session, SessionParams, Suspended};
use crate::tokenizer::Detokenizer;

const MAGIC: &[u8; 8] = b"AUTARKSS";
const VERSION: u32 = 1;
/// Magic, version and header length.
const PREAMBLE: usize = 16;
const CHECKSUM: usize = 32;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// `Model::id` in hex.
    model: String,
    n_ctx: usize,
    n_batch: usize,
    cache_type_k: String,
    cache_type_v: String,
    n_tokens: usize,
    vocab_size: usize,
    kv_bytes: usize,
    generation: Option<Generation>,
    /// The application's own data (the CLI keeps a conversation here).
    app: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generation {
    rng: u64,
    detok_tokens: Vec<u32>,
    detok_read: usize,
    held: String,
    held_emitted: usize,
    /// A constrained generation's constraint and the tokens it accepted (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    constraint: Option<SavedConstraint>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedConstraint {
    constraint: crate::constraint::Constraint,
    accepted: Vec<u32>,
}

fn corrupt(what: impl Into<String>) -> RuntimeError {
    RuntimeError::CorruptState(what.into())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::Format(autark_format::FormatError::Io { path: path.to_path_buf(), source: e })
}

/// A writer that hashes what it writes.
struct Hashing<W> {
    w: W,
    sha: Sha256,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.sha.update(b);
        self.w.write_all(b)
    }
}

/// A reader that hashes what it reads.
struct Hashed<R> {
    r: R,
    sha: Sha256,
    buf: Vec<u8>,
}

impl<R: Read> Hashed<R> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let mut buf = std::mem::take(&mut self.buf);
        self.fill(&mut buf, n)?;
        self.buf = buf;
        Ok(&self.buf)
    }

    fn fill(&mut self, buf: &mut Vec<u8>, n: usize) -> Result<()> {
        buf.resize(n, 0);
        self.r.read_exact(buf).map_err(|_| corrupt("truncated"))?;
        self.sha.update(&buf[..]);
        Ok(())
    }
}

impl Session {
    /// Saves the session's state to `path` (atomically: a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with_app_data(path, "")
    }

    /// `save`, with `app` (any text, e.g. a conversation as JSON) stored beside the state.
    pub fn save_with_app_data(&self, path: &Path, app: &str) -> Result<()> {
        self.require_flat_cache("saving a session state")?;
        let (tokens, logits) = (self.tokens(), self.logits());
        let kv = self.backend().kv();
        let [k, v] = kv.types();
        let header = Header {
            model: hex(&self.model().id()),
            n_ctx: self.n_ctx(),
            n_batch: self.n_batch(),
            cache_type_k: k.name().into(),
            cache_type_v: v.name().into(),
            n_tokens: tokens.len(),
            vocab_size: logits.len(),
            kv_bytes: kv.state_bytes(tokens.len()),
            generation: self.suspended.as_ref().map(|s| {
                let (ids, read) = s.detok.state();
                Generation {
                    rng: s.rng,
                    detok_tokens: ids.to_vec(),
                    detok_read: read,
                    held: s.held.clone(),
                    held_emitted: s.held_emitted,
                    constraint: s.guide.as_ref().map(|g| SavedConstraint {
                        constraint: g.constraint().clone(),
                        accepted: g.accepted().to_vec(),
                    }),
                }
            }),
            app: app.into(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| corrupt(e.to_string()))?;
        let json_len = u32::try_from(json.len()).map_err(|_| corrupt("header over 4 GiB"))?;
        let tmp = temp_path(path);
        let file = File::options().write(true).create_new(true).open(&tmp).map_err(io(&tmp))?;
        let result = (|| -> std::io::Result<()> {
            let mut w = Hashing { w: BufWriter::with_capacity(1 << 20, file), sha: Sha256::new() };
            w.put(MAGIC)?;
            w.put(&VERSION.to_le_bytes())?;
            w.put(&json_len.to_le_bytes())?;
            w.put(&json)?;
            let mut buf = Vec::with_capacity(1 << 16);
            tokens.iter().for_each(|t| buf.extend_from_slice(&t.to_le_bytes()));
            logits.iter().for_each(|l| buf.extend_from_slice(&l.to_le_bytes()));
            w.put(&buf)?;
            self.write_cache(tokens.len(), &mut |bytes| w.put(bytes))?;
            let sum: [u8; 32] = w.sha.finalize_reset().into();
            w.w.write_all(&sum)?;
            let f = w.w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()
        })();
        if let Err(e) = result.and_then(|_| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(path)(e));
        }
        Ok(())
    }

    /// A session holding the state `save` wrote to `path`, on `model` (the same model file:
    /// another model's state is refused with `StateModelMismatch`). The state's context size,
    /// batch size and cache types replace those of `params`; its threads and memory budget
    /// apply.
    pub fn load(model: Arc<Model>, path: &Path, params: SessionParams) -> Result<Session> {
        Self::load_with_app_data(model, path, params).map(|(s, _)| s)
    }

    /// `load`, also returning the application data saved with `save_with_app_data`.
    pub fn load_with_app_data(model: Arc<Model>, path: &Path, params: SessionParams) -> Result<(Session, String)> {
        let file = File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        let mut r = Hashed { r: BufReader::with_capacity(1 << 20, file), sha: Sha256::new(), buf: Vec::new() };
        if len < (PREAMBLE + CHECKSUM) as u64 {
            return Err(corrupt(format!("{len} bytes is too short for a session state")));
        }
        let pre = r.take(PREAMBLE)?;
        if &pre[..8] != MAGIC {
            return Err(corrupt("not an autark session state (bad magic)"));
        }
        let version = u32::from_le_bytes(pre[8..12].try_into().expect("4 bytes"));
        let json_len = u32::from_le_bytes(pre[12..16].try_into().expect("4 bytes")) as u64;
        if version != VERSION {
            return Err(corrupt(format!("version {version}; this runtime reads version {VERSION}")));
        }
        if json_len > len - (PREAMBLE + CHECKSUM) as u64 {
            return Err(corrupt(format!("header of {json_len} bytes in a file of {len}")));
        }
        let h: Header = serde_json::from_slice(r.take(json_len as usize)?).map_err(|e| corrupt(e.to_string()))?;
        let id = hex(&model.id());
        if h.model != id {
            return Err(RuntimeError::StateModelMismatch { state: h.model, model: id });
        }
        let vocab = model.config().vocab_size;
        if h.vocab_size != vocab {
            return Err(corrupt(format!("{} logits for a vocabulary of {vocab}", h.vocab_size)));
        }
        let ty = |name: &str| CacheType::parse(name).ok_or_else(|| corrupt(format!("unknown cache type {name:?}")));
        let (kt, vt) = (ty(&h.cache_type_k)?, ty(&h.cache_type_v)?);
        if h.n_tokens > h.n_ctx || h.n_ctx == 0 {
            return Err(corrupt(format!("{} tokens in a context of {}", h.n_tokens, h.n_ctx)));
        }
        // Sizes the file must have, before anything is allocated for them.
        let described = (h.n_tokens as u64)
            .checked_add(vocab as u64)
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| n.checked_add(h.kv_bytes as u64))
            .and_then(|n| n.checked_add(PREAMBLE as u64 + CHECKSUM as u64 + json_len));
        if described != Some(len) {
            return Err(corrupt(format!("{len} bytes; the header describes another size")));
        }
        let params = SessionParams { n_ctx: h.n_ctx, n_batch: h.n_batch, cache_type_k: kt, cache_type_v: vt, ..params };
        let mut session = Session::new(model, params)?;
        if session.n_ctx() != h.n_ctx || session.n_batch() != h.n_batch {
            return Err(corrupt(format!("context {} / batch {} cannot be rebuilt", h.n_ctx, h.n_batch)));
        }
        if session.backend().kv().state_bytes(h.n_tokens) != h.kv_bytes {
            return Err(corrupt(format!("{} cache bytes, this model's cache needs a different size", h.kv_bytes)));
        }
        let tokens: Vec<u32> =
            r.take(h.n_tokens * 4)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4"))).collect();
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(RuntimeError::InvalidToken { id: bad, vocab });
        }
        let logits: Vec<f32> =
            r.take(vocab * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect();
        session.require_flat_cache("loading a session state")?;
        session.backend_mut().kv_mut().read(h.n_tokens, &mut |buf, n| r.fill(buf, n))?;
        let want: [u8; 32] = r.sha.finalize_reset().into();
        let mut got = [0u8; 32];
        r.r.read_exact(&mut got).map_err(|_| corrupt("truncated"))?;
        if got != want {
            return Err(corrupt("checksum mismatch: the file is damaged"));
        }
        session.cache_to_device(h.n_tokens)?;
        session.restore(&tokens, &logits);
        if let Some(g) = h.generation {
            if g.detok_tokens.iter().any(|&t| t as usize >= vocab)
                || g.held_emitted > g.held.len()
                || !g.held.is_char_boundary(g.held_emitted)
                || h.n_tokens == 0
            {
                return Err(corrupt("inconsistent generation state"));
            }
            let detok =
                Detokenizer::from_state(g.detok_tokens, g.detok_read).ok_or_else(|| corrupt("detokenizer state"))?;
            // The constraint is compiled again and replays the tokens it had accepted.
            let guide = match g.constraint {
                Some(c) => Some(Box::new(
                    session
                        .model()
                        .replay_constraint(&c.constraint, &c.accepted)
                        .map_err(|e| corrupt(format!("the generation's constraint: {e}")))?,
                )),
                None => None,
            };
            session.suspended =
                Some(Suspended { rng: g.rng, detok, held: g.held, held_emitted: g.held_emitted, guide });
        }
        Ok((session, h.app))
    }
}

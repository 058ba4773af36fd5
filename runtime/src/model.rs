//! `Model`: a mapped `.autark` file, its configuration, tokenizer and the tensor views a
//! forward pass needs, checked at load. Immutable, `Send + Sync`, shared by sessions.

use std::path::Path;

use autark_format::{expected_tensors, Architecture, AutarkFile, Metadata, ModelConfig, Role};
use autark_kernels::ops::{cast_f32, WeightView};
use autark_kernels::DType;

use crate::chat::ChatMessage;
use crate::error::{Result, RuntimeError};
use crate::tokenizer::Tokenizer;

/// Index of a tensor in the file's table.
pub(crate) type T = usize;

/// A layer's tensors by role (`Role::LAYER`); optional ones are `None` when the configuration
/// has none.
pub(crate) struct Layer([Option<T>; Role::LAYER.len()]);

impl Layer {
    /// A tensor every layer has.
    pub fn at(&self, r: Role) -> T {
        self.get(r).expect("required tensors are checked at load")
    }

    pub fn get(&self, r: Role) -> Option<T> {
        self.0.get(r.layer_index()?).copied().flatten()
    }
}

/// What a generation starts from.
#[derive(Debug, Clone, Copy)]
pub enum Prompt<'a> {
    /// Plain text: tokenized with the model's special tokens (BOS where the model wants one).
    Text(&'a str),
    /// A conversation, rendered by the model's chat template with the assistant's turn opened
    /// (the template writes any BOS itself).
    Chat(&'a [ChatMessage]),
}

pub struct Model {
    file: AutarkFile,
    arch: Architecture,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) layers: Vec<Layer>,
    pub(crate) token_embd: T,
    pub(crate) output_norm: T,
    /// The output head (the embedding when tied).
    pub(crate) output: T,
    /// The constraint compiler over this model's vocabulary (`constraint::Compiler`), built on
    /// first use; stored type-erased so that the model does not depend on the module that
    /// depends on it (`Model::constraints` downcasts).
    pub(crate) constraints: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl Model {
    /// Maps and validates `path`; checks every tensor the architecture needs
    /// (`autark_format::expected_tensors`, the list the quantizer writes).
    pub fn load(path: &Path) -> Result<Model> {
        let file = AutarkFile::open(path)?;
        let meta = file.metadata();
        let arch = meta.arch().ok_or_else(|| RuntimeError::UnsupportedArchitecture(meta.architecture.clone()))?;
        let c = &meta.config;
        let tokenizer = Tokenizer::from_meta(&meta.tokenizer, c.vocab_size)?;
        let mut layers: Vec<Layer> = (0..c.n_layers).map(|_| Layer([None; Role::LAYER.len()])).collect();
        let (mut token_embd, mut output_norm, mut output) = (0, 0, None);
        for e in expected_tensors(c) {
            let i = file
                .tensors()
                .iter()
                .position(|t| t.name == e.name)
                .ok_or_else(|| RuntimeError::MissingTensor(e.name.clone()))?;
            let t = &file.tensors()[i];
            if t.shape != e.shape {
                let what = format!("shape {:?}, expected {:?}", t.shape, e.shape);
                return Err(RuntimeError::BadTensor { name: e.name, what });
            }
            if !e.role.is_matrix() && t.dtype != DType::F32 {
                return Err(RuntimeError::BadTensor {
                    name: e.name,
                    what: format!("{} (vectors must be f32)", t.dtype),
                });
            }
            match (e.role, e.layer) {
                (Role::TokenEmbd, _) => token_embd = i,
                (Role::OutputNorm, _) => output_norm = i,
                (Role::Output, _) => output = Some(i),
                (r, l) => {
                    if let (Some(l), Some(k)) = (l, r.layer_index()) {
                        layers[l].0[k] = Some(i);
                    }
                }
            }
        }
        let output = output.unwrap_or(token_embd);
        let model =
            Model { file, arch, tokenizer, layers, token_embd, output_norm, output, constraints: Default::default() };
        // Build every view once so that a bad dtype or alignment fails here, not mid-generation.
        for i in 0..model.file.tensors().len() {
            let t = &model.file.tensors()[i];
            if t.shape.len() == 2 {
                model.try_weight(i)?;
            } else {
                model.try_vector(i)?;
            }
        }
        Ok(model)
    }

    /// The tokens of `prompt`, as every front end feeds them to `Session::generate`.
    pub fn prompt_tokens(&self, prompt: Prompt<'_>) -> Result<Vec<u32>> {
        match prompt {
            Prompt::Text(text) => self.tokenizer.encode(text, true),
            Prompt::Chat(messages) => {
                let text = crate::chat::render(&self.tokenizer, messages, true)?;
                self.tokenizer.encode(&text, false)
            }
        }
    }

    /// Replaces the file's chat template (or gives a model without one a template) for
    /// `Prompt::Chat`; the template must render a one-message conversation
    /// (`probe::check_chat_template`). The file is not changed.
    pub fn set_chat_template(&mut self, template: &str) -> Result<()> {
        let t = &self.tokenizer;
        crate::probe::check_chat_template(
            template,
            t.bos_token.as_deref().unwrap_or(""),
            t.eos_token.as_deref().unwrap_or(""),
        )?;
        self.tokenizer.chat_template = Some(template.to_string());
        Ok(())
    }

    pub fn architecture(&self) -> Architecture {
        self.arch
    }

    pub fn metadata(&self) -> &Metadata {
        self.file.metadata()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.file.metadata().config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The file's identity: the SHA-256 its header keeps of the metadata and the tensor table
    /// (every tensor's SHA-256), so two files share it only if they hold the same model.
    pub fn id(&self) -> [u8; 32] {
        self.file.layout().header_sha256
    }

    pub fn file(&self) -> &AutarkFile {
        &self.file
    }

    /// Parameters (elements of all tensors).
    pub fn n_params(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_elements() as u64).sum()
    }

    fn try_weight(&self, i: T) -> Result<WeightView<'_>> {
        let t = &self.file.tensors()[i];
        WeightView::with_layout(t.dtype, t.layout, t.shape[0], t.shape[1], self.file.data(t))
            .map_err(|e| RuntimeError::BadTensor { name: t.name.clone(), what: e.to_string() })
    }

    fn try_vector(&self, i: T) -> Result<&[f32]> {
        let t = &self.file.tensors()[i];
        cast_f32(self.file.data(t)).map_err(|e| RuntimeError::BadTensor { name: t.name.clone(), what: e.to_string() })
    }

    /// A weight matrix view (validated at load).
    pub(crate) fn weight(&self, i: T) -> WeightView<'_> {
        self.try_weight(i).expect("validated at load")
    }

    /// An f32 vector (validated at load).
    pub(crate) fn vector(&self, i: T) -> &[f32] {
        self.try_vector(i).expect("validated at load")
    }
}

#[cfg(test)]
const _: () = {
    const fn shareable<X: Send + Sync>() {}
    shareable::<Model>();
};

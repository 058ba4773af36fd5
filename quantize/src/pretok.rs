//! The pre-tokenizers of byte-level BPE (`gpt2`) GGUF vocabularies, by the name llama.cpp's
//! converter stores in `tokenizer.ggml.pre`.
//!
//! Each one is a list of regexes, applied one after another: every regex splits every piece
//! further, its matches and the text between them each becoming a piece (Hugging Face's `Split`
//! with `Isolated` behaviour, in sequence). The names and patterns are those llama.cpp's
//! `llama-vocab.cpp` (llama.cpp@0c1e57098, as vendored by llama-cpp-python 0.3.36) accepts and
//! splits with; most of them are the models' own `tokenizer.json` patterns, with `(?i:…)`
//! spelled out as `[sS]` classes. `ignore_merges`: a piece that is a token as a whole stays one
//! token (Llama 3's tokenizer; llama.cpp's `ignore_merges`). `add_bos`: llama.cpp's default
//! for files that do not say whether to add BOS.
//!
//! A few names need splitters llama.cpp writes in code rather than as regexes, or do not use
//! GPT-2's byte-to-character map (`UNSUPPORTED`): the converter refuses them rather than
//! tokenize differently from the model's training.

pub(crate) struct PreTokenizer {
    /// `tokenizer.ggml.pre` spellings.
    pub names: &'static [&'static str],
    /// Regexes applied in order, each splitting every piece further.
    pub splits: &'static [&'static str],
    pub ignore_merges: bool,
    /// Whether a BOS token is added when the file does not say (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
}

/// The pre-tokenizer called `name`: `Ok(None)` for a name llama.cpp does not know, `Err(why)`
/// for one it splits with code of its own.
pub(crate) fn lookup(name: &str) -> Result<Option<&'static PreTokenizer>, &'static str> {
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(names, _)| names.contains(&name)) {
        return Err(why);
    }
    Ok(PRE_TOKENIZERS.iter().find(|p| p.names.contains(&name)))
}

/// Names llama.cpp accepts whose splitting is not a list of regexes over byte-level text.
const UNSUPPORTED: &[(&[&str], &str)] = &[
    (&["kimi-k2"], "splits Han characters with a hand-written splitter"),
    (&["afmoe"], "groups digits with a hand-written splitter"),
    (&["gemma4", "granite-embed-multi-311m", "sarvam-moe"], "is SentencePiece-style BPE over raw UTF-8"),
    (&["whitespace"], "splits on whitespace over raw UTF-8 (not byte-level)"),
];

const DEFAULT: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];
const MINICPM5: &[&str] = &[
    r"\p{N}{1,3}",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const LLAMA3: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const DEEPSEEK_LLM: &[&str] = &[
    r"[\r\n]",
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}+",
];
const DEEPSEEK_CODER: &[&str] = &[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"];
const DEEPSEEK3_LLM: &[&str] = &[
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];
const SPARK2_5: &[&str] = &[
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##,
    r"\p{N}",
];
const YOUTU: &[&str] = &[
    r"[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const FALCON: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|`]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"[0-9][0-9][0-9]",
];
const MPT: &[&str] = &[r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"];
const STARCODER: &[&str] = &[r"\p{N}", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"];
const JAIS2: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}",
];
const QWEN2: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const QWEN35: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const PORO: &[&str] = &[r" ?[^(\s|.,!?…。，、।۔،)]+"];
const VIKING: &[&str] = &[r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"];
const TEKKEN: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const EXAONE_MOE: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",
];
const CHAMELEON: &[&str] = &[
    r"<sentinel:[0-9]+>",
    r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    r"([\t\n]|    |  )",
    r"\p{N}",
    r"[\p{P}!-/:-@\[-`{-~]",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
];
const GPT4O: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const GRANITE_EMB_MULTI: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const TINY_AYA: &[&str] = &[
    r"\d{1,3}(?=(?:\d{3})*\b)",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const SUPERBPE: &[&str] = &[r"\p{N}+", r"(?=(\d{3})+(?!\d))"];
const BAILINGMOE: &[&str] = &[
    r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
];
const SEED_CODER: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const UFAKZEKA: &[&str] = &[r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"];
const LAGUNA: &[&str] = &[
    r"[^\n]+|[\n]+",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];

pub(crate) const PRE_TOKENIZERS: &[PreTokenizer] = &[
    PreTokenizer { names: &[r"default"], splits: DEFAULT, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"minicpm5"], splits: MINICPM5, ignore_merges: true, add_bos: false },
    PreTokenizer {
        names: &[
            r"llama3",
            r"llama-v3",
            r"llama-bpe",
            r"falcon3",
            r"falcon-h1",
            r"pixtral",
            r"midm-2.0",
            r"lfm2",
            r"jina-v5-nano",
        ],
        splits: LLAMA3,
        ignore_merges: true,
        add_bos: true,
    },
    PreTokenizer { names: &[r"deepseek-llm"], splits: DEEPSEEK_LLM, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"deepseek-coder"], splits: DEEPSEEK_CODER, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"deepseek-v3"], splits: DEEPSEEK3_LLM, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"spark2_5"], splits: SPARK2_5, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"youtu"], splits: YOUTU, ignore_merges: true, add_bos: false },
    PreTokenizer { names: &[r"falcon"], splits: FALCON, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"mpt"], splits: MPT, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"starcoder"], splits: STARCODER, ignore_merges: false, add_bos: false },
    PreTokenizer {
        names: &[
            r"gpt-2",
            r"phi-2",
            r"jina-es",
            r"jina-de",
            r"gigachat",
            r"jina-v2-es",
            r"jina-v2-de",
            r"a.x-4.0",
            r"mellum",
            r"modern-bert",
            r"jina-v1-en",
            r"jina-v2-code",
            r"roberta-bpe",
            r"exaone4",
        ],
        splits: MPT,
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer { names: &[r"jais-2"], splits: JAIS2, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"refact"], splits: STARCODER, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"command-r"], splits: STARCODER, ignore_merges: false, add_bos: false },
    PreTokenizer {
        names: &[r"qwen2", r"deepseek-r1-qwen", r"kormo", r"f2llmv2", r"megrez"],
        splits: QWEN2,
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer { names: &[r"qwen35"], splits: QWEN35, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"stablelm2"], splits: QWEN2, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"olmo"], splits: MPT, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"dbrx"], splits: LLAMA3, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"smaug-bpe"], splits: LLAMA3, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"poro-chat"], splits: PORO, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"chatglm-bpe"], splits: LLAMA3, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"glm4", r"glm5"], splits: LLAMA3, ignore_merges: true, add_bos: false },
    PreTokenizer { names: &[r"viking"], splits: VIKING, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"jais"], splits: MPT, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"tekken"], splits: TEKKEN, ignore_merges: true, add_bos: true },
    PreTokenizer { names: &[r"smollm"], splits: STARCODER, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"codeshell"], splits: STARCODER, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"bloom"], splits: PORO, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"gpt3-finnish"], splits: PORO, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"exaone"], splits: STARCODER, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"exaone-moe"], splits: EXAONE_MOE, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"chameleon"], splits: CHAMELEON, ignore_merges: false, add_bos: true },
    PreTokenizer { names: &[r"minerva-7b"], splits: STARCODER, ignore_merges: false, add_bos: false },
    PreTokenizer {
        names: &[r"gpt-4o", r"llama4", r"kanana2", r"talkie"],
        splits: GPT4O,
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &[r"granite-embed-multi-97m"],
        splits: GRANITE_EMB_MULTI,
        ignore_merges: true,
        add_bos: false,
    },
    PreTokenizer { names: &[r"tiny_aya", r"cohere2moe"], splits: TINY_AYA, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"superbpe"], splits: SUPERBPE, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"trillion"], splits: MPT, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"granite-docling"], splits: MPT, ignore_merges: false, add_bos: false },
    PreTokenizer {
        names: &[r"bailingmoe", r"bailingmoe2", r"llada-moe"],
        splits: BAILINGMOE,
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer { names: &[r"seed-coder"], splits: SEED_CODER, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"hunyuan"], splits: QWEN2, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"hunyuan-dense"], splits: DEEPSEEK3_LLM, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"hy_v4"], splits: DEEPSEEK3_LLM, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"joyai-llm"], splits: DEEPSEEK3_LLM, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"ufakzeka"], splits: UFAKZEKA, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"grok-2"], splits: QWEN2, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"laguna"], splits: LAGUNA, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"minimax-m2"], splits: GPT4O, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"solar-open"], splits: QWEN2, ignore_merges: false, add_bos: false },
    PreTokenizer { names: &[r"mellum2"], splits: STARCODER, ignore_merges: false, add_bos: false },
];

//! Weight precisions a model can be loaded at — f32, f16, q8_0 (int8, GGML
//! blocks of 32 with an f16 scale) and q4_0 (int4) — and the label an index
//! records for them. The model owns this type; `quant` builds on it.

use std::fmt;
use std::str::FromStr;

use candle_core::quantized::GgmlDType;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize)]
pub enum Precision {
    #[default]
    F32,
    F16,
    Q8_0,
    Q4_0,
}

pub const ALL: [Precision; 4] = [
    Precision::F32,
    Precision::F16,
    Precision::Q8_0,
    Precision::Q4_0,
];

impl Precision {
    pub fn ggml_dtype(self) -> GgmlDType {
        match self {
            Precision::F32 => GgmlDType::F32,
            Precision::F16 => GgmlDType::F16,
            Precision::Q8_0 => GgmlDType::Q8_0,
            Precision::Q4_0 => GgmlDType::Q4_0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Q8_0 => "q8_0",
            Precision::Q4_0 => "q4_0",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "q8_0" | "int8" => Ok(Precision::Q8_0),
            "q4_0" | "int4" => Ok(Precision::Q4_0),
            o => Err(format!("unknown precision {o:?} (f32, f16, q8_0, q4_0)")),
        }
    }
}

/// The label recorded in index metadata: `q8_0`, or `q8_0+head` when the
/// embeddings and LM head were quantized too.
pub fn label(p: Precision, quantize_head: bool) -> String {
    if quantize_head && p != Precision::F32 {
        format!("{p}+head")
    } else {
        p.to_string()
    }
}

/// Inverse of [`label`].
pub fn parse_label(s: &str) -> Option<(Precision, bool)> {
    match s.strip_suffix("+head") {
        Some(p) => p.parse().ok().map(|p| (p, true)),
        None => s.parse().ok().map(|p| (p, false)),
    }
}

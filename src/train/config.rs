//! The training recipe as one TOML-backed struct; every field can be
//! overridden from the command line with `--set field=value`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::encode::{Head, Variant};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Base model: `base`, a .gguf file or an HF directory.
    pub model: String,
    /// Start from this adapter (e.g. the adaptation phase's) instead of the bare base.
    pub init_adapter: Option<PathBuf>,
    pub variant: Variant,
    /// `raw` (the paper's head) or `logprob:C`.
    pub head: String,
    /// Learn the log-probability head's shift C.
    pub learn_shift: bool,
    /// Learn a shift per vocabulary entry for the log-probability head (one
    /// value per term, stored with the adapter and applied at encode time),
    /// so that the model can weigh terms beyond the cap log(1 + C).
    pub learn_term_shift: bool,
    /// Where learned per-term shifts start when the initial adapter has
    /// none: `zero`, or `df:BETA`, a lexical prior from the training
    /// passages' document frequencies, `b_v = BETA · (idf_v − max idf)`, so
    /// frequent terms start with a lower cap (`idf = ln((N+1)/(df+0.5))`).
    pub term_shift_init: String,
    /// The query-side prior recorded in the adapter, which search and eval
    /// then use unless told otherwise: `none`, `idf` or `idf:POWER`.
    pub query_prior: String,
    /// `lora` or `full` (every targeted projection trainable).
    pub adapter: String,
    pub lora_rank: usize,
    pub lora_alpha: f32,
    /// Projection names that get adapters (suffixes of `layers.N.self_attn.q_proj`).
    pub targets: Vec<String>,
    pub seed: u64,
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per micro-batch (queries, or packed sequences for adaptation).
    pub batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Texts per forward pass, grouped by length (more keeps more cores busy,
    /// fewer wastes less padding).
    pub forward_group: usize,
    /// Memory (GB) the CPU engine may hold in forward groups' activations
    /// between the forward and the backward pass; groups beyond it are
    /// forwarded again for their backward pass (gradient caching), which
    /// costs time, not memory. 0: half the memory available at the start.
    pub activation_memory_gb: f64,
    /// Precision of the frozen base's products on the fused CPU engine
    /// (LoRA's projections and the LM head, forward and input gradient):
    /// `f32`; `bf16` — activations and weights rounded to bf16, sums in
    /// f32, as in GPU mixed-precision training; up to twice the f32 rate on CPUs
    /// with AVX-512 BF16; or `auto` (the default): bf16 where the CPU has
    /// AVX-512 BF16's dot product, else f32. The trainable weights, their
    /// gradients and the optimizer stay f32. CPUs without AVX-512 compute
    /// f32 either way.
    pub frozen_precision: String,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    pub shift_lr: f64,
    /// Learning rate of the per-term shifts.
    pub term_shift_lr: f64,
    pub checkpoint_every: usize,
    /// Stop after this many seconds of this call (0 = no limit): checkpoint
    /// and write the adapter of the step reached (time-boxed GPU runs, CI budgets).
    pub max_seconds: f64,
    // Contrastive phase.
    pub lambda_q: f32,
    pub lambda_d: f32,
    /// Steps of SPLADE's quadratic FLOPS warm-up.
    pub flops_warmup_steps: usize,
    /// BM25 hard negatives per query.
    pub hard_negatives: usize,
    /// Hard negatives are drawn from these BM25 ranks (1-based, positives skipped).
    pub negative_depth: usize,
    pub query_max_len: usize,
    pub doc_max_len: usize,
    /// Training pairs: `scifact` (train qrels), `climate-fever`
    /// (claim/evidence), and the collections under `train/`: `squad`,
    /// `nq-qed`, `medquad`, `debian` (or any BEIR directory with train qrels).
    pub pairs: Vec<String>,
    /// Sampling weight per source of `pairs` (a TOML table): each slot of a
    /// batch comes from source s with probability w_s / Σw. Empty: every
    /// pair is equally likely (sources in proportion to their size).
    pub pair_weights: BTreeMap<String, f64>,
    /// Where the collections live (default: $CSPLADE_DATA, else
    /// $CSPLADE_HOME/data).
    pub data_dir: Option<PathBuf>,
    /// Distillation: a teacher csplade opens (a SPLADE checkpoint directory,
    /// or anything `--model` takes) that scores every query–document pair
    /// of a micro-batch; the student also learns to match its distribution.
    pub teacher: Option<String>,
    /// β: the loss is `(1−β)·InfoNCE + β·KL(teacher ‖ student)` (+ FLOPS).
    pub distill_weight: f32,
    /// τ: the teacher's scores are divided by it before its softmax.
    pub teacher_temperature: f32,
    /// w: the teacher becomes its hybrid with BM25 over the run's training
    /// documents — per query, `w · bm25 + (1 − w) · teacher`, both min-max
    /// normalised over the micro-batch's documents (so τ acts on [0, 1]
    /// scores: 0.1 or below keeps the teacher decisive). 0: the teacher alone.
    pub teacher_bm25: f32,
    // Adaptation phase.
    /// λ of the ReLU-CLM term (paper: 1).
    pub lambda_relu: f32,
    /// Tokens per packed sequence.
    pub seq_len: usize,
    /// Corpora whose text is packed: BEIR collection names under the data dir.
    pub corpora: Vec<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: "base".into(),
            init_adapter: None,
            variant: Variant::Echo,
            head: "logprob:6".into(),
            learn_shift: false,
            learn_term_shift: false,
            term_shift_init: "zero".into(),
            query_prior: "none".into(),
            adapter: "lora".into(),
            lora_rank: 16,
            lora_alpha: 32.0,
            targets: [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .map(String::from)
            .to_vec(),
            seed: 17,
            steps: 200,
            batch: 8,
            grad_accum: 1,
            forward_group: 4,
            activation_memory_gb: 0.0,
            frozen_precision: "auto".into(),
            lr: 1e-4,
            warmup_steps: 10,
            weight_decay: 0.0,
            grad_clip: 1.0,
            shift_lr: 1e-2,
            term_shift_lr: 1e-2,
            checkpoint_every: 20,
            max_seconds: 0.0,
            lambda_q: 3e-3,
            lambda_d: 1e-3,
            flops_warmup_steps: 50,
            hard_negatives: 1,
            negative_depth: 30,
            query_max_len: 64,
            doc_max_len: 128,
            pairs: vec!["scifact".into(), "climate-fever".into()],
            pair_weights: BTreeMap::new(),
            data_dir: None,
            teacher: None,
            distill_weight: 0.0,
            teacher_temperature: 1.0,
            teacher_bm25: 0.0,
            lambda_relu: 1.0,
            seq_len: 128,
            corpora: vec!["scifact".into()],
        }
    }
}

impl TrainConfig {
    /// Read a TOML file (missing fields take defaults), then apply
    /// `field=value` overrides (values in TOML syntax; bare words are strings).
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, String> {
        let mut table: toml::Table = match file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                text.parse().map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| format!("--set {o:?}: expected field=value"))?;
            let value: toml::Value = format!("x = {v}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("x").cloned())
                .unwrap_or_else(|| toml::Value::String(v.to_string()));
            table.insert(k.trim().to_string(), value);
        }
        let cfg: TrainConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e| match file {
                Some(p) => format!("{}: {e}", p.display()),
                None => e.to_string(),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !matches!(
            parse_head(&self.head)?,
            Head::RawLogits | Head::LogProb { .. }
        ) {
            return Err(format!(
                "head = {:?}: training uses raw or logprob:C",
                self.head
            ));
        }
        self.term_shift_beta()?;
        self.query_prior
            .parse::<crate::model::encoding::QueryPrior>()
            .map_err(|e| format!("query_prior: {e}"))?;
        if !matches!(self.frozen_precision.as_str(), "auto" | "f32" | "bf16") {
            return Err(format!(
                "frozen_precision = {:?}: auto, f32 or bf16",
                self.frozen_precision
            ));
        }
        if !matches!(self.adapter.as_str(), "lora" | "full") {
            return Err(format!("adapter = {:?}: lora or full", self.adapter));
        }
        if self.steps == 0
            || self.batch == 0
            || self.grad_accum == 0
            || self.lora_rank == 0
            || self.forward_group == 0
        {
            return Err(
                "steps, batch, grad_accum, forward_group and lora_rank must be positive".into(),
            );
        }
        if self.seq_len < 2 || self.doc_max_len == 0 || self.query_max_len == 0 {
            return Err("seq_len ≥ 2, query_max_len and doc_max_len ≥ 1".into());
        }
        let finite = [
            ("lr", self.lr),
            ("shift_lr", self.shift_lr),
            ("term_shift_lr", self.term_shift_lr),
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
            ("max_seconds", self.max_seconds),
            ("activation_memory_gb", self.activation_memory_gb),
            ("lambda_q", self.lambda_q as f64),
            ("lambda_d", self.lambda_d as f64),
            ("lambda_relu", self.lambda_relu as f64),
            ("lora_alpha", self.lora_alpha as f64),
        ];
        for (name, v) in finite {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} = {v}: must be a finite number ≥ 0"));
            }
        }
        if self.lr == 0.0 {
            return Err("lr = 0: nothing would be learned".into());
        }
        for (name, w) in &self.pair_weights {
            if !w.is_finite() || *w < 0.0 {
                return Err(format!("pair_weights.{name} = {w}: must be finite and ≥ 0"));
            }
        }
        self.check_distillation()?;
        if (self.learn_shift || self.learn_term_shift)
            && !matches!(self.head(), Head::LogProb { .. })
        {
            return Err("learn_shift / learn_term_shift need a logprob:C head".into());
        }
        Ok(())
    }

    fn check_distillation(&self) -> Result<(), String> {
        let (beta, tau) = (self.distill_weight, self.teacher_temperature);
        if !(0.0..=1.0).contains(&beta) {
            return Err(format!("distill_weight = {beta}: must lie in [0, 1]"));
        }
        if !(tau.is_finite() && tau > 0.0) {
            return Err(format!(
                "teacher_temperature = {tau}: must be a finite number > 0"
            ));
        }
        let w = self.teacher_bm25;
        if !(0.0..1.0).contains(&w) {
            return Err(format!("teacher_bm25 = {w}: must lie in [0, 1)"));
        }
        if w > 0.0 && self.teacher.is_none() {
            return Err(format!(
                "teacher_bm25 = {w} fuses BM25 into a teacher: it needs teacher = \"MODEL\""
            ));
        }
        match (&self.teacher, beta > 0.0) {
            (None, true) => Err(format!(
                "distill_weight = {beta} needs a teacher (teacher = \"MODEL\")"
            )),
            (Some(t), false) => Err(format!(
                "teacher = {t:?} with distill_weight = 0: the teacher would be ignored"
            )),
            _ => Ok(()),
        }
    }

    /// The teacher and its weight and temperature, when distilling.
    pub fn distillation(&self) -> Option<(&str, f32, f32)> {
        self.teacher
            .as_deref()
            .filter(|_| self.distill_weight > 0.0)
            .map(|t| (t, self.distill_weight, self.teacher_temperature))
    }

    pub fn head(&self) -> Head {
        parse_head(&self.head).unwrap_or_default()
    }

    /// Whether `engine` multiplies by the frozen base in bf16 on this CPU:
    /// the fused CPU engine, and `frozen_precision = "bf16"` on a CPU that
    /// runs bf16 panels ([`crate::model::gemm::bf16_available`]) or `auto`
    /// on one that runs them at bf16's own rate
    /// ([`crate::model::gemm::bf16_native`]).
    pub fn bf16_products(&self, engine: super::Engine) -> bool {
        use crate::model::gemm::{bf16_available, bf16_native};
        engine == super::Engine::Cpu
            && match self.frozen_precision.as_str() {
                "bf16" => bf16_available(),
                "auto" => bf16_native(),
                _ => false,
            }
    }

    /// β of `term_shift_init = "df:β"`, or `None` for `zero`.
    pub fn term_shift_beta(&self) -> Result<Option<f32>, String> {
        let s = self.term_shift_init.as_str();
        if s == "zero" {
            return Ok(None);
        }
        match s.strip_prefix("df:").map(str::parse::<f32>) {
            Some(Ok(b)) if b.is_finite() && b > 0.0 && b <= 10.0 => Ok(Some(b)),
            _ => Err(format!(
                "term_shift_init = {s:?}: zero, or df:BETA with 0 < BETA ≤ 10"
            )),
        }
    }

    /// The query prior to record in the adapter (validated at load).
    pub fn query_prior(&self) -> crate::model::encoding::QueryPrior {
        self.query_prior.parse().unwrap_or_default()
    }

    /// The collections the recipe reads (pairs and adaptation corpora).
    pub fn input_dirs(&self) -> Vec<PathBuf> {
        let data = self.data_dir();
        let teacher = self
            .teacher
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists());
        self.pairs
            .iter()
            .chain(&self.corpora)
            .map(|s| super::data::source_dir(&data, s))
            .chain(teacher)
            .collect()
    }

    /// Would [`Self::claim_output`] accept `out`? (Checked before a long
    /// load, so a refusal comes at once.)
    pub fn check_output(&self, out: &Path) -> Result<(), crate::data::output::OutputRefused> {
        use crate::data::output;
        let inputs = self.input_dirs();
        let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        output::check(out, &output::TRAINING_RUN, &refs)
    }

    /// Lock the run directory `out` for `command` and claim it: refused when
    /// it is neither new, empty nor a training run csplade wrote, or when it
    /// lies inside (or holds) a collection the recipe reads.
    pub fn claim_output(
        &self,
        out: &Path,
        command: &str,
    ) -> Result<crate::data::output::OutputLock, crate::data::output::OutputError> {
        use crate::data::output;
        let inputs = self.input_dirs();
        let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        let lock = output::lock::acquire(out, command)?;
        output::claim_dir(out, &output::TRAINING_RUN, &refs)?;
        Ok(lock)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(crate::data::shared_data_dir)
    }
}

/// `raw` or `logprob:C`.
pub fn parse_head(s: &str) -> Result<Head, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_unknown_fields_are_refused() {
        let c = TrainConfig::load(
            None,
            &[
                "steps=7".into(),
                "variant=bi".into(),
                "lr=0.5".into(),
                "targets=[\"q_proj\"]".into(),
            ],
        )
        .expect("config");
        assert_eq!((c.steps, c.variant, c.lr), (7, Variant::Bi, 0.5));
        assert_eq!(c.targets, vec!["q_proj".to_string()]);
        let e = TrainConfig::load(None, &["stepz=7".into()]).expect_err("unknown field");
        assert!(e.contains("stepz"), "{e}");
        assert!(TrainConfig::load(None, &["head=weird".into()]).is_err());
    }

    #[test]
    fn frozen_precision_follows_the_cpu_and_the_engine() {
        use crate::model::gemm::{bf16_available, bf16_native};
        use crate::train::Engine;
        let load = |p: &str| TrainConfig::load(None, &[format!("frozen_precision=\"{p}\"")]);
        let default = TrainConfig::load(None, &[]).expect("defaults");
        assert_eq!(default.frozen_precision, "auto");
        for (p, on_cpu) in [
            ("auto", bf16_native()),
            ("bf16", bf16_available()),
            ("f32", false),
        ] {
            let c = load(p).expect(p);
            assert_eq!(c.bf16_products(Engine::Cpu), on_cpu, "{p}");
            assert!(
                !c.bf16_products(Engine::Generic),
                "{p} on the generic engine"
            );
        }
        let e = load("fp16").expect_err("unknown precision");
        assert!(e.contains("auto, f32 or bf16"), "{e}");
    }

    #[test]
    fn distillation_settings_are_checked_together() {
        let load = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            TrainConfig::load(None, &sets)
        };
        let c = load(&["teacher=\"splade\"", "distill_weight=0.5"]).expect("a teacher");
        assert_eq!(c.distillation(), Some(("splade", 0.5, 1.0)));
        assert_eq!(load(&[]).expect("no teacher").distillation(), None);
        for (sets, says) in [
            (&["distill_weight=0.5"][..], "needs a teacher"),
            (&["teacher=\"t\""][..], "would be ignored"),
            (&["teacher=\"t\"", "distill_weight=1.5"][..], "[0, 1]"),
            (
                &[
                    "teacher=\"t\"",
                    "distill_weight=0.5",
                    "teacher_temperature=0",
                ][..],
                "> 0",
            ),
            (
                &[
                    "teacher=\"t\"",
                    "distill_weight=0.5",
                    "teacher_temperature=nan",
                ][..],
                "> 0",
            ),
            (
                &["teacher=\"t\"", "distill_weight=0.5", "teacher_bm25=1"][..],
                "[0, 1)",
            ),
            (&["teacher_bm25=0.5"][..], "needs teacher"),
        ] {
            let e = load(sets).expect_err("refused");
            assert!(e.contains(says), "{sets:?}: {e}");
        }
    }
}

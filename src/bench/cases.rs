//! The kernel suite of `tilejit bench`: one [`Case`] type per kind of
//! measurement, and the shape lists of the quick and the full suite.
//!
//! | section | case | work | bound |
//! |---|---|---|---|
//! | dense GEMM | [`DenseGemm`]: AMX, AVX-512, scalar (small shape), u8s8 and bf16 | ops | TMUL peak of the dtype, for every ISA |
//! | GEMV | [`WeightStream`]: M = 1 through the dispatcher, weights cycled through 1 GiB | packed weight bytes | streaming read |
//! | decode | [`QuantDecode`]: Q8_0/Q4_0/Q4_1 x Q8 activations, weights cycled through 1 GiB | GGUF bytes | streaming read |
//! | prefill | [`QuantPrefill`]: every [`PrefillStrategy`], M = 128 and 512 | ops | int8 TMUL peak, for every strategy |
//! | JIT | [`JitCompile`]: fresh generation of one kernel | kernels | none |
//! | dispatch | [`Dispatch`]: a one-block GEMM through `gemm_int8`/`gemm_bf16` | ops | the same kernel called directly |
//!
//! Prefill compares every strategy with the int8 peak, the fastest unit
//! that can compute the quantized product, so the percentages of the
//! strategies compare directly (the bf16 ones could reach at most ~50 %).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use tilejit_kernels::dense_amx::{Blocking, DenseAmxSpec};
use tilejit_kernels::dense_amx::{DenseAmxArgs, DenseAmxKernel};
use tilejit_kernels::pack::{AlignedBytes, PackedB};
use tilejit_kernels::quant_avx512::{QuantAvx512Kernel, QuantAvx512Spec, WeightFormat};
use tilejit_kernels::spec::{CInit, ElemType, Int8Sign};

use super::suite::{BenchError, Bound, Case, CaseInfo, Reference, SuiteConfig, Work, DRAM_SPAN};
use super::{
    random_operands, run_on, GemmFixture, GemvFixture, PrefillStrategy, QuantGemvFixture, QuantPrefillFixture,
};
use crate::gemm::GemmOptions;
use crate::isa::{self, Isa};

/// The int8 signedness of every int8 case: VPDPBUSD's native u8 x s8, so
/// that AMX, AVX-512 and scalar rows compute the same thing.
pub const INT8: ElemType = ElemType::Int8(Int8Sign::US);
/// The dense element types of the suite.
pub const ELEMS: [ElemType; 2] = [INT8, ElemType::Bf16];

fn shape_name((m, n, k): (usize, usize, usize)) -> String {
    format!("{m}x{n}x{k}")
}

fn available(isa: Isa) -> Result<(), BenchError> {
    Ok(isa::availability(isa)?)
}

/// The ISA the dispatcher picks for an M-row GEMM (honouring `TILEJIT_ISA`).
fn routed_isa(elem: ElemType, m: usize) -> Isa {
    isa::forced().ok().flatten().unwrap_or_else(|| crate::gemm::dispatch::choose(elem, m, false))
}

/// Dense GEMM with B packed once, A and C cache-friendly, on one ISA.
pub struct DenseGemm {
    elem: ElemType,
    isa: Isa,
    shape: (usize, usize, usize),
    opts: GemmOptions,
    fixture: Option<GemmFixture>,
}

impl DenseGemm {
    /// The scalar path runs on one thread whatever `threads` says.
    pub fn new(elem: ElemType, isa: Isa, shape: (usize, usize, usize), threads: usize) -> DenseGemm {
        let threads = if isa == Isa::Scalar { 1 } else { threads };
        let opts = GemmOptions { threads, isa: Some(isa), ..GemmOptions::default() };
        DenseGemm { elem, isa, shape, opts, fixture: None }
    }
}

impl Case for DenseGemm {
    fn info(&self) -> CaseInfo {
        let name = format!("gemm/{}/{}/{}", self.elem.name(), self.isa, shape_name(self.shape));
        CaseInfo::dense(name, "gemm", self.elem.name(), self.isa, self.shape, self.opts.threads, Bound::tmul(self.elem))
    }

    fn prepare(&mut self) -> Result<(), BenchError> {
        available(self.isa)?;
        let (m, n, k) = self.shape;
        let mut fixture = GemmFixture::new(self.elem, m, n, k)?;
        fixture.run(&self.opts)?;
        self.fixture = Some(fixture);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BenchError> {
        Ok(self.fixture.as_mut().expect("prepared").run(&self.opts)?)
    }

    fn work(&self) -> Work {
        let (m, n, k) = self.shape;
        Work::Ops(2.0 * (m * n * k) as f64)
    }

    fn release(&mut self) {
        self.fixture = None;
    }
}

/// M-row GEMMs through the dispatcher on weights that come from DRAM:
/// packed copies cycled through `span` bytes, one copy per `run`.
pub struct WeightStream {
    elem: ElemType,
    shape: (usize, usize, usize),
    opts: GemmOptions,
    span: usize,
    fixture: Option<GemvFixture>,
    next: usize,
}

impl WeightStream {
    pub fn new(elem: ElemType, shape: (usize, usize, usize), threads: usize, span: usize) -> WeightStream {
        let opts = GemmOptions { threads, ..GemmOptions::default() };
        WeightStream { elem, shape, opts, span, fixture: None, next: 0 }
    }
}

impl Case for WeightStream {
    fn info(&self) -> CaseInfo {
        let (m, ..) = self.shape;
        let isa = routed_isa(self.elem, m);
        let op = if m == 1 { "gemv" } else { "gemm_dram" };
        let name = format!("{op}/{}/{isa}/{}", self.elem.name(), shape_name(self.shape));
        CaseInfo::dense(name, op, self.elem.name(), isa, self.shape, self.opts.threads, Bound::Read)
    }

    fn prepare(&mut self) -> Result<(), BenchError> {
        let (m, n, k) = self.shape;
        let copies = self.span.div_ceil(n * k * self.elem.elem_bytes());
        let mut fixture = GemvFixture::new(self.elem, m, n, k, copies)?;
        fixture.run_copy(0, &self.opts)?;
        self.fixture = Some(fixture);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BenchError> {
        self.next += 1;
        Ok(self.fixture.as_mut().expect("prepared").run_copy(self.next, &self.opts)?)
    }

    fn work(&self) -> Work {
        Work::Bytes(self.fixture.as_ref().map_or(0, GemvFixture::copy_bytes) as f64)
    }

    fn release(&mut self) {
        self.fixture = None;
    }
}

/// Decode (M = 1) over GGUF block weights with the AVX-512 VNNI kernel,
/// copies cycled through `span` bytes, one copy per `run`.
pub struct QuantDecode {
    format: WeightFormat,
    n: usize,
    k: usize,
    threads: usize,
    span: usize,
    fixture: Option<QuantGemvFixture>,
    next: usize,
}

impl QuantDecode {
    pub fn new(format: WeightFormat, n: usize, k: usize, threads: usize, span: usize) -> QuantDecode {
        QuantDecode { format, n, k, threads, span, fixture: None, next: 0 }
    }
}

impl Case for QuantDecode {
    fn info(&self) -> CaseInfo {
        let shape = (1, self.n, self.k);
        let name = format!("decode/{}/avx512/{}", self.format.name(), shape_name(shape));
        CaseInfo::dense(name, "decode", self.format.name(), Isa::Avx512, shape, self.threads, Bound::Read)
    }

    fn prepare(&mut self) -> Result<(), BenchError> {
        available(Isa::Avx512)?;
        let copies = self.span.div_ceil(self.n * self.k / 32 * self.format.gguf_block_bytes());
        let mut fixture = QuantGemvFixture::new(self.format, self.n, self.k, copies)?;
        fixture.run_copy(0, self.threads)?;
        self.fixture = Some(fixture);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BenchError> {
        self.next += 1;
        Ok(self.fixture.as_mut().expect("prepared").run_copy(self.next, self.threads)?)
    }

    fn work(&self) -> Work {
        Work::Bytes(self.fixture.as_ref().map_or(0, QuantGemvFixture::copy_gguf_bytes) as f64)
    }

    fn release(&mut self) {
        self.fixture = None;
    }
}

/// The key of a prefill fixture: format, M, N, K.
type PrefillKey = (WeightFormat, usize, usize, usize);

/// One prefill fixture shared by the strategies of a shape (it packs the
/// weights for all of them): built by the first case that needs it, kept
/// until a case needs another shape or the last case holding it is dropped.
#[derive(Clone, Default)]
pub struct PrefillSlot(Rc<RefCell<Option<(PrefillKey, QuantPrefillFixture)>>>);

impl PrefillSlot {
    fn with<T>(
        &self,
        key: PrefillKey,
        f: impl FnOnce(&mut QuantPrefillFixture) -> Result<T, BenchError>,
    ) -> Result<T, BenchError> {
        let mut slot = self.0.borrow_mut();
        if slot.as_ref().is_none_or(|(k, _)| *k != key) {
            *slot = None; // free the old one before building the next
            let (format, m, n, k) = key;
            *slot = Some((key, QuantPrefillFixture::new(format, m, n, k)?));
        }
        f(&mut slot.as_mut().expect("built above").1)
    }
}

/// Quantized prefill: M Q8 activation rows against N x K GGUF weights, one
/// strategy.
pub struct QuantPrefill {
    key: PrefillKey,
    strategy: PrefillStrategy,
    threads: usize,
    slot: PrefillSlot,
}

impl QuantPrefill {
    pub fn new(
        format: WeightFormat,
        strategy: PrefillStrategy,
        (m, n, k): (usize, usize, usize),
        threads: usize,
        slot: PrefillSlot,
    ) -> QuantPrefill {
        QuantPrefill { key: (format, m, n, k), strategy, threads, slot }
    }
}

impl Case for QuantPrefill {
    fn info(&self) -> CaseInfo {
        let (format, m, n, k) = self.key;
        let name = format!("prefill/{}/{}/{}", format.name(), self.strategy.slug(), shape_name((m, n, k)));
        let isa = self.strategy.isa();
        CaseInfo::dense(name, "prefill", format.name(), isa, (m, n, k), self.threads, Bound::TmulInt8)
    }

    fn prepare(&mut self) -> Result<(), BenchError> {
        available(self.strategy.isa())?;
        let (strategy, threads) = (self.strategy, self.threads);
        self.slot.with(self.key, |fx| Ok(fx.run(strategy, threads)?))
    }

    fn run(&mut self) -> Result<(), BenchError> {
        let (strategy, threads) = (self.strategy, self.threads);
        self.slot.with(self.key, |fx| Ok(fx.run(strategy, threads)?))
    }

    fn work(&self) -> Work {
        let (_, m, n, k) = self.key;
        Work::Ops(2.0 * (m * n * k) as f64)
    }
}

/// What a [`JitCompile`] case generates.
#[derive(Clone, Copy, Debug)]
pub enum JitKernel {
    DenseAmx(DenseAmxSpec),
    QuantAvx512(QuantAvx512Spec),
}

/// Time to generate one kernel from its spec, without the kernel cache.
pub struct JitCompile {
    kernel: JitKernel,
}

impl JitCompile {
    pub fn new(kernel: JitKernel) -> JitCompile {
        JitCompile { kernel }
    }

    fn generate(&self) -> Result<usize, BenchError> {
        let generated = match self.kernel {
            JitKernel::DenseAmx(spec) => DenseAmxKernel::generate(spec).map(|k| k.code().len()),
            JitKernel::QuantAvx512(spec) => QuantAvx512Kernel::generate(spec).map(|k| k.code().len()),
        };
        generated.map_err(|e| BenchError::Failed(format!("kernel generation failed: {e}")))
    }
}

impl Case for JitCompile {
    fn info(&self) -> CaseInfo {
        // Named by blocking (dense) or rows (quant); M x N x K is what one
        // call of the kernel covers per K step.
        let (dtype, isa, variant, shape) = match self.kernel {
            JitKernel::DenseAmx(s) => {
                let shape = (s.block_rows(), s.block_cols(), s.k_per_step());
                (s.elem.name(), Isa::Amx, s.blocking.to_string(), shape)
            }
            JitKernel::QuantAvx512(s) => {
                let shape = (s.m_rows as usize, 16 * s.panels_per_pass as usize, 32);
                (s.format.name(), Isa::Avx512, format!("m{}", s.m_rows), shape)
            }
        };
        CaseInfo::dense(format!("jit/{dtype}/{isa}/{variant}"), "jit", dtype, isa, shape, 1, Bound::None)
    }

    fn prepare(&mut self) -> Result<(), BenchError> {
        self.generate().map(|_| ())
    }

    fn run(&mut self) -> Result<(), BenchError> {
        self.generate().map(|_| ())
    }

    fn work(&self) -> Work {
        Work::Kernels(1.0)
    }
}

/// The data of a [`Dispatch`] case: one 2x2 block of C.
struct DispatchData {
    a: AlignedBytes,
    b: PackedB,
    c: AlignedBytes,
    kernel: Arc<DenseAmxKernel>,
}

/// Dispatch overhead: one 32 x 32 block (one K step) through the public
/// GEMM call with default options (validation, ISA choice, task split,
/// kernel cache), against the same cached kernel called directly. The
/// percent of bound is kernel time / call time.
pub struct Dispatch {
    elem: ElemType,
    data: Option<DispatchData>,
}

impl Dispatch {
    pub fn new(elem: ElemType) -> Dispatch {
        Dispatch { elem, data: None }
    }

    fn shape(&self) -> (usize, usize, usize) {
        (32, 32, 16 * self.elem.elems_per_group())
    }

    /// The spec the AMX driver uses for this shape and default options.
    fn spec(&self, b: &PackedB) -> DenseAmxSpec {
        DenseAmxSpec {
            k_groups_per_tdp: b.k_groups_per_tdp(),
            ..DenseAmxSpec::new(self.elem, Blocking::B2X2, CInit::Zero)
        }
    }
}

impl Case for Dispatch {
    fn info(&self) -> CaseInfo {
        let name = format!("dispatch/{}/amx/{}", self.elem.name(), shape_name(self.shape()));
        let mut info = CaseInfo::dense(name, "dispatch", self.elem.name(), Isa::Amx, self.shape(), 1, Bound::Reference);
        info.reference = Some(Reference::KernelAlone);
        info
    }

    fn prepare(&mut self) -> Result<(), BenchError> {
        available(Isa::Amx)?;
        let (m, n, k) = self.shape();
        if routed_isa(self.elem, m) != Isa::Amx {
            return Err(BenchError::NotApplicable(format!(
                "the driver routes this shape to {}, not to the AMX kernel this case compares with",
                routed_isa(self.elem, m)
            )));
        }
        let (a, b) = random_operands(self.elem, m, n, k, 3)?;
        let kernel = crate::gemm::kernel(self.spec(&b)).map_err(crate::gemm::GemmError::from)?;
        self.data = Some(DispatchData { a, b, c: AlignedBytes::zeroed(m * n * 4), kernel });
        self.run()?;
        self.run_reference()
    }

    fn run(&mut self) -> Result<(), BenchError> {
        let shape = self.shape();
        let d = self.data.as_mut().expect("prepared");
        Ok(run_on(self.elem, shape, &d.a, &d.b, &mut d.c, &GemmOptions::default())?)
    }

    fn run_reference(&mut self) -> Result<(), BenchError> {
        let (_, n, _) = self.shape();
        let d = self.data.as_mut().expect("prepared");
        let b = d.b.as_bytes().as_ptr();
        let args = DenseAmxArgs {
            a: d.a.as_slice().as_ptr(),
            lda: d.a.len() / 32,
            b: d.b.as_bytes()[d.b.tile_offset(0, 0)..].as_ptr(),
            b_panel_stride: d.b.block_panel_stride(0),
            c: d.c.as_mut_slice().as_mut_ptr(),
            ldc: n * 4,
            k_steps: d.b.k_steps(),
            n_blocks: 1,
            prefetch_a: d.a.as_slice().as_ptr(),
            prefetch_a_row_lines: 1,
            prefetch_a_skip: 0,
            prefetch_b: b,
        };
        // SAFETY: AMX permission was granted in `prepare`; A holds 32 rows
        // of one K step (64 bytes) at `lda`, B the two panels of one step,
        // C 32 rows of 32 outputs; the prefetches stay inside A and B.
        unsafe { d.kernel.run(&args) };
        Ok(())
    }

    fn work(&self) -> Work {
        let (m, n, k) = self.shape();
        Work::Ops(2.0 * (m * n * k) as f64)
    }

    fn release(&mut self) {
        self.data = None;
    }
}

/// Dense GEMM on AMX and AVX-512 (the headline shape) and scalar (a small
/// shape: the scalar model runs at well under 1 GOP/s).
pub fn dense_gemm(plan: &SuiteConfig) -> Vec<Box<dyn Case>> {
    // The tour's shape in both suites (cheap enough, and comparable).
    let big = (512, 512, 4096);
    let small = if plan.quick { (32, 32, 128) } else { (64, 64, 256) };
    let mut out: Vec<Box<dyn Case>> = Vec::new();
    for elem in ELEMS {
        for isa in [Isa::Amx, Isa::Avx512] {
            out.push(Box::new(DenseGemm::new(elem, isa, big, plan.threads)));
        }
        out.push(Box::new(DenseGemm::new(elem, Isa::Scalar, small, plan.threads)));
    }
    out
}

/// GEMV, M = 1, 4096 x 4096 (the decode shape of issue 3).
pub fn gemv(plan: &SuiteConfig) -> Vec<Box<dyn Case>> {
    ELEMS
        .iter()
        .map(|&e| Box::new(WeightStream::new(e, (1, 4096, 4096), plan.threads, DRAM_SPAN)) as Box<dyn Case>)
        .collect()
}

/// Quantized decode on a 4096 x 4096 projection and (full suite) a
/// 14336 x 4096 FFN layer.
pub fn decode(plan: &SuiteConfig) -> Vec<Box<dyn Case>> {
    let shapes: &[(usize, usize)] = if plan.quick { &[(4096, 4096)] } else { &[(4096, 4096), (14336, 4096)] };
    let mut out: Vec<Box<dyn Case>> = Vec::new();
    for &(n, k) in shapes {
        for format in WeightFormat::ALL {
            out.push(Box::new(QuantDecode::new(format, n, k, plan.threads, DRAM_SPAN)));
        }
    }
    out
}

/// Quantized prefill, every strategy, on SmolLM2-135M's down projection
/// (576 x 1536), a 4096 x 4096 layer and (full suite) a 14336 x 4096 one,
/// for M = 128 and 512 (quick: M = 128, the two smaller shapes).
pub fn prefill(plan: &SuiteConfig) -> Vec<Box<dyn Case>> {
    let (ms, shapes): (&[usize], &[(usize, usize)]) = if plan.quick {
        (&[128], &[(576, 1536), (4096, 4096)])
    } else {
        (&[128, 512], &[(576, 1536), (4096, 4096), (14336, 4096)])
    };
    let slot = PrefillSlot::default();
    let mut out: Vec<Box<dyn Case>> = Vec::new();
    for &(n, k) in shapes {
        for &m in ms {
            for format in WeightFormat::ALL {
                for strategy in PrefillStrategy::ALL {
                    out.push(Box::new(QuantPrefill::new(format, strategy, (m, n, k), plan.threads, slot.clone())));
                }
            }
        }
    }
    out
}

/// JIT compile time of the dense 2x2 AMX kernels and the Q8_0 decode kernel.
pub fn jit(_plan: &SuiteConfig) -> Vec<Box<dyn Case>> {
    let mut out: Vec<Box<dyn Case>> = ELEMS
        .iter()
        .map(|&e| {
            Box::new(JitCompile::new(JitKernel::DenseAmx(DenseAmxSpec::new(e, Blocking::B2X2, CInit::Load))))
                as Box<dyn Case>
        })
        .collect();
    out.push(Box::new(JitCompile::new(JitKernel::QuantAvx512(QuantAvx512Spec::new(WeightFormat::Q8_0, 4)))));
    out
}

/// Dispatch overhead for both element types.
pub fn dispatch(_plan: &SuiteConfig) -> Vec<Box<dyn Case>> {
    ELEMS.iter().map(|&e| Box::new(Dispatch::new(e)) as Box<dyn Case>).collect()
}

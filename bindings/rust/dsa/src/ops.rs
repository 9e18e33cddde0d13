//! One method of [`Context`] per libdsa op, and the ops' parameter structs.
//!
//! Adding an op: declare its params struct with `params!` (fields as in dsa.h, without
//! struct_size) and add one method that converts the params with `raw_params`, passes tensors with
//! `as_raw()` and returns `Error::check` of the call.
use std::marker::PhantomData;
use std::os::raw::c_void;
use std::ptr;

use crate::context::{Context, Device, Stream};
use crate::error::{Error, Result, Status};
use crate::sys;
use crate::tensor::{TensorView, TensorViewMut};

/// A params struct: Rust fields mirroring the C fields after struct_size, defaults from the C
/// `*_params_init` function (so they always match the library).
macro_rules! params {
    ($(#[$doc:meta])* $name:ident = $raw:ident, $init:ident { $($(#[$field_doc:meta])* $field:ident: $type:ty,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: $type,)*
        }

        impl Default for $name {
            // A struct without fields yet (dsa_indexer_params_t) reads nothing from `raw`.
            #[allow(unused_variables)]
            fn default() -> Self {
                let raw = initialised(sys::$init);
                $name { $($field: raw.$field.into(),)* }
            }
        }

        impl RawParams for $name {
            type Raw = sys::$raw;
            #[allow(unused_mut)]
            fn to_raw(self) -> sys::$raw {
                let mut raw = initialised(sys::$init);
                $(raw.$field = self.$field.into();)*
                raw
            }
        }
    };
}

/// A C enum carried as an integer: a newtype with its named codes and the conversions to and
/// from the integer (unknown codes pass through; libdsa rejects them by name).
macro_rules! codes {
    ($(#[$doc:meta])* $name:ident($repr:ty) { $($(#[$code_doc:meta])* $code:ident = $value:expr,)* }) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub $repr);

        impl $name {
            $($(#[$code_doc])* pub const $code: $name = $name($value as $repr);)*
        }

        impl From<$repr> for $name {
            fn from(code: $repr) -> $name {
                $name(code)
            }
        }

        impl From<$name> for $repr {
            fn from(value: $name) -> $repr {
                value.0
            }
        }
    };
}

/// A C params struct filled by its init function (which only fails for a NULL pointer).
fn initialised<T>(init: unsafe extern "C" fn(*mut T) -> sys::dsa_status_t) -> T {
    let mut raw = std::mem::MaybeUninit::<T>::zeroed();
    let status = unsafe { init(raw.as_mut_ptr()) };
    debug_assert_eq!(status, sys::DSA_STATUS_SUCCESS);
    unsafe { raw.assume_init() }
}

trait RawParams: Copy {
    type Raw;
    fn to_raw(self) -> Self::Raw;
}

/// Holds the C struct of optional params for the duration of a call; `None` passes NULL
/// (the library's defaults).
struct RawParamsOf<P: RawParams>(Option<P::Raw>);

impl<P: RawParams> RawParamsOf<P> {
    fn as_ptr(&self) -> *const P::Raw {
        self.0.as_ref().map_or(ptr::null(), |raw| raw as *const P::Raw)
    }
}

fn raw_params<P: RawParams>(params: Option<&P>) -> RawParamsOf<P> {
    RawParamsOf(params.map(|params| params.to_raw()))
}

/// An optional input tensor: `None` passes NULL (dsa.h says which tensors may be NULL).
fn optional(view: Option<&TensorView>) -> *const sys::dsa_tensor_t {
    view.map_or(ptr::null(), |view| view.as_raw())
}

/// An optional output tensor: `None` passes NULL.
fn optional_mut(view: Option<&mut TensorViewMut>) -> *const sys::dsa_tensor_t {
    view.map_or(ptr::null(), |view| view.as_raw())
}

codes! {
    /// How FP8 block quantisation chooses a group's scale (`DSA_SCALE_FORMAT_*`).
    ScaleFormat(i32) {
        /// s = amax / 448, any f32 value.
        F32 = sys::DSA_SCALE_FORMAT_F32,
        /// s = 2^ceil(log2(amax / 448)), an exact power of two (DeepSeek-V3.2).
        UE8M0 = sys::DSA_SCALE_FORMAT_UE8M0,
    }
}

params! {
    /// Parameters of [`Context::quantize_fp8`], [`Context::dequantize_fp8`] and
    /// [`Context::hadamard_quantize_fp8`] (`dsa_quantize_fp8_params_t`).
    QuantizeFp8Params = dsa_quantize_fp8_params_t, dsa_quantize_fp8_params_init {
        /// B: consecutive elements sharing a scale (default 128).
        group_size: i32,
        /// How scales are chosen (default [`ScaleFormat::F32`]).
        scale_format: ScaleFormat,
        /// Lower bound on a group's amax (default 1e-4; > 0).
        amax_floor: f32,
    }
}

params! {
    /// Parameters of [`Context::hadamard`] and [`Context::hadamard_quantize_fp8`]
    /// (`dsa_hadamard_params_t`).
    HadamardParams = dsa_hadamard_params_t, dsa_hadamard_params_init {
        /// Multiplier of the result; 0 (default) means n^-0.5 (orthonormal).
        scale: f32,
    }
}

/// Scratch memory of the fused ops ([`Context::indexer_topk`], [`Context::attention`], ...): the
/// C `workspace, workspace_bytes` pair, on the context's device. The ops take
/// `Option<&mut Workspace>`; `None` passes NULL and the library allocates scratch for the call.
/// libdsa refuses a workspace that is not aligned to 16 bytes or is smaller than the matching
/// `*_workspace_size` query.
#[derive(Debug)]
pub struct Workspace<'a> {
    data: *mut c_void,
    bytes: usize,
    device: Device,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Workspace<'a> {
    /// Host memory, for CPU contexts.
    pub fn new(memory: &'a mut [u8]) -> Workspace<'a> {
        Workspace { data: memory.as_mut_ptr().cast(), bytes: memory.len(), device: Device::Cpu, _borrow: PhantomData }
    }

    /// Memory the caller describes, e.g. a CUDA allocation.
    ///
    /// # Safety
    /// `data` must address `bytes` bytes on `device`, writable and not otherwise accessed for
    /// `'a`; for CUDA, until the work enqueued on the op's stream has completed.
    pub unsafe fn from_raw(data: *mut c_void, bytes: usize, device: Device) -> Workspace<'a> {
        Workspace { data, bytes, device, _borrow: PhantomData }
    }
}

// A workspace is an exclusive borrow of plain bytes, like `&mut [u8]`.
unsafe impl Send for Workspace<'_> {}
unsafe impl Sync for Workspace<'_> {}

codes! {
    /// Output order of [`Context::topk`] (`DSA_TOPK_ORDER_*`); the selected set never depends on it.
    TopkOrder(u32) {
        /// A deterministic order that is otherwise unspecified (the fastest).
        UNSPECIFIED = sys::DSA_TOPK_ORDER_UNSPECIFIED,
        /// Score descending, ties by ascending index; NaN-scored (forced) tokens last, by index.
        SCORE = sys::DSA_TOPK_ORDER_SCORE,
        /// Ascending token index.
        INDEX = sys::DSA_TOPK_ORDER_INDEX,
    }
}

params! {
    /// Parameters of [`Context::topk`] (`dsa_topk_params_t`).
    TopkParams = dsa_topk_params_t, dsa_topk_params_init {
        /// Tokens selected per row (default 2048; >= 1, may exceed N).
        k: i32,
        /// Output order (default [`TopkOrder::UNSPECIFIED`]).
        order: TopkOrder,
        /// The first `n_sink` tokens of each row's window are always selected (default 0).
        n_sink: i32,
        /// The last `n_local` tokens of each row's window are always selected (default 0;
        /// n_sink + n_local <= k).
        n_local: i32,
        /// Tokens per page of the block table (default 64; >= 1).
        page_size: i32,
    }
}

params! {
    /// Parameters of [`Context::indexer_logits`] and [`Context::indexer_logits_paged`]
    /// (`dsa_indexer_params_t`); no options yet.
    IndexerParams = dsa_indexer_params_t, dsa_indexer_params_init {
    }
}

params! {
    /// Parameters of [`Context::sparse_attention`] and [`Context::sparse_attention_paged`]
    /// (`dsa_sparse_attention_params_t`).
    SparseAttentionParams = dsa_sparse_attention_params_t, dsa_sparse_attention_params_init {
        /// Softmax scale applied to q.k. Required: the default 0 is rejected (DeepSeek-V3.2 uses
        /// 0.13523378, not d_qk^-0.5).
        scale: f32,
        /// Value width: the first d_v dims of each KV entry (default 512; 1 <= d_v <= d_qk).
        d_v: i32,
    }
}

codes! {
    /// Which token set the distributions of [`Context::indexer_loss`] live on
    /// (`DSA_INDEXER_LOSS_*`).
    IndexerLossMode(u32) {
        /// Dense warm-up: every token of the row's window.
        DENSE = sys::DSA_INDEXER_LOSS_DENSE,
        /// Sparse stage: the row's selected tokens inside the window, renormalised.
        SPARSE = sys::DSA_INDEXER_LOSS_SPARSE,
    }
}

params! {
    /// Parameters of [`Context::indexer_loss`] (`dsa_indexer_loss_params_t`).
    IndexerLossParams = dsa_indexer_loss_params_t, dsa_indexer_loss_params_init {
        /// The token sets (default [`IndexerLossMode::DENSE`]).
        mode: IndexerLossMode,
        /// Loss weight (default 1; finite).
        coeff: f32,
        /// Softmax scale of the teacher's q.k, required with `teacher_q` (the default 0 is
        /// rejected); ignored with `teacher_probs`.
        teacher_scale: f32,
    }
}

codes! {
    /// How [`Context::sparse_attention_backward`] reduces dkv (`DSA_SPARSE_ATTENTION_BACKWARD_*`).
    SparseAttentionBackwardMode(u32) {
        /// Bitwise reproducible run to run (and, on the CPU, for any thread count); the default.
        DETERMINISTIC = sys::DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC,
        /// The fastest reduction (f32 atomics on CUDA); on the CPU the same as `DETERMINISTIC`.
        FAST = sys::DSA_SPARSE_ATTENTION_BACKWARD_FAST,
    }
}

params! {
    /// Parameters of [`Context::sparse_attention_backward`] (`dsa_sparse_attention_backward_params_t`).
    SparseAttentionBackwardParams = dsa_sparse_attention_backward_params_t, dsa_sparse_attention_backward_params_init {
        /// The forward's softmax scale. Required: the default 0 is rejected.
        scale: f32,
        /// The forward's value width (default 512; 1 <= d_v <= d_qk).
        d_v: i32,
        /// How dkv is reduced (default [`SparseAttentionBackwardMode::DETERMINISTIC`]).
        mode: SparseAttentionBackwardMode,
    }
}

impl Context {
    /// FP8 block quantisation (`dsa_quantize_fp8`): x [..., N] (f32, bf16 or f16) to e4m3 codes
    /// q [..., N] (Fp8E4M3 or u8) and f32 scales [..., N / group_size]. `None` params are the
    /// defaults. See dsa.h for layouts and statuses.
    pub fn quantize_fp8(
        &self,
        params: Option<&QuantizeFp8Params>,
        x: &TensorView,
        q: &mut TensorViewMut,
        scales: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe {
            sys::dsa_quantize_fp8(self.as_raw(), params.as_ptr(), x.as_raw(), q.as_raw(), scales.as_raw(), stream.as_raw())
        })
    }

    /// The inverse of [`Context::quantize_fp8`] (`dsa_dequantize_fp8`): y = f32(q) * s into
    /// y [..., N] (f32 or bf16). Only `group_size` of the params is read.
    pub fn dequantize_fp8(
        &self,
        params: Option<&QuantizeFp8Params>,
        q: &TensorView,
        scales: &TensorView,
        y: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe {
            sys::dsa_dequantize_fp8(self.as_raw(), params.as_ptr(), q.as_raw(), scales.as_raw(), y.as_raw(), stream.as_raw())
        })
    }

    /// Hadamard rotation (`dsa_hadamard`): y = (x . H_n) * scale along the last dimension
    /// (n a power of two up to 1024; x and y both f32 or both bf16, same shape).
    pub fn hadamard(&self, params: Option<&HadamardParams>, x: &TensorView, y: &mut TensorViewMut, stream: Stream) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe { sys::dsa_hadamard(self.as_raw(), params.as_ptr(), x.as_raw(), y.as_raw(), stream.as_raw()) })
    }

    /// [`Context::hadamard`] in place (`dsa_hadamard` with y = x).
    pub fn hadamard_in_place(&self, params: Option<&HadamardParams>, x: &mut TensorViewMut, stream: Stream) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe { sys::dsa_hadamard(self.as_raw(), params.as_ptr(), x.as_raw(), x.as_raw(), stream.as_raw()) })
    }

    /// [`Context::hadamard`] and [`Context::quantize_fp8`] in one pass
    /// (`dsa_hadamard_quantize_fp8`): every row of x [..., N] (f32, bf16 or f16; N a power of two
    /// up to 1024) rotated in f32 and quantised to codes q [..., N] and f32 scales
    /// [..., N / group_size], bitwise the two ops with an f32 temporary in between. `None` params
    /// are the defaults. See dsa.h for layouts and statuses.
    pub fn hadamard_quantize_fp8(
        &self,
        hadamard_params: Option<&HadamardParams>,
        quantize_params: Option<&QuantizeFp8Params>,
        x: &TensorView,
        q: &mut TensorViewMut,
        scales: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        let (hadamard_params, quantize_params) = (raw_params(hadamard_params), raw_params(quantize_params));
        Error::check(unsafe {
            sys::dsa_hadamard_quantize_fp8(
                self.as_raw(),
                hadamard_params.as_ptr(),
                quantize_params.as_ptr(),
                x.as_raw(),
                q.as_raw(),
                scales.as_raw(),
                stream.as_raw(),
            )
        })
    }

    /// Top-k selection (`dsa_topk`): for every row of scores f32 [R, N], the indices i32 [R, k]
    /// of the k best tokens of the window [row_starts, row_ends) (`None`: 0 and N), larger score
    /// first and equal scores by smaller index, -1 padding at the end; with a block table
    /// i32 [B, max_pages], physical slots instead. See dsa.h for sinks, locals and statuses.
    #[allow(clippy::too_many_arguments)]
    pub fn topk(
        &self,
        params: Option<&TopkParams>,
        scores: &TensorView,
        row_starts: Option<&TensorView>,
        row_ends: Option<&TensorView>,
        block_table: Option<&TensorView>,
        indices: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe {
            sys::dsa_topk(
                self.as_raw(),
                params.as_ptr(),
                scores.as_raw(),
                optional(row_starts),
                optional(row_ends),
                optional(block_table),
                indices.as_raw(),
                stream.as_raw(),
            )
        })
    }

    /// Lightning-indexer logits of a ragged prefill (`dsa_indexer_logits`): q e4m3 [S_q, H_I, D_I],
    /// weights f32 [S_q, H_I], k e4m3 [S_kv, D_I], k_scale f32 [S_kv], windows ks, ke i32 [S_q]
    /// into logits f32 [S_q, S_kv] (-inf outside each window).
    #[allow(clippy::too_many_arguments)]
    pub fn indexer_logits(
        &self,
        params: Option<&IndexerParams>,
        q: &TensorView,
        weights: &TensorView,
        k: &TensorView,
        k_scale: &TensorView,
        ks: &TensorView,
        ke: &TensorView,
        logits: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe {
            sys::dsa_indexer_logits(
                self.as_raw(),
                params.as_ptr(),
                q.as_raw(),
                weights.as_raw(),
                k.as_raw(),
                k_scale.as_raw(),
                ks.as_raw(),
                ke.as_raw(),
                logits.as_raw(),
                stream.as_raw(),
            )
        })
    }

    /// Lightning-indexer logits of a decode step over the paged key cache
    /// (`dsa_indexer_logits_paged`): q e4m3 [B, n_next, H_I, D_I], weights f32 [B * n_next, H_I],
    /// k_cache u8 [num_pages, 64 * (D_I + 4)], block_table i32 [B, max_pages], context_lens
    /// i32 [B] into logits f32 [B * n_next, max_context].
    #[allow(clippy::too_many_arguments)]
    pub fn indexer_logits_paged(
        &self,
        params: Option<&IndexerParams>,
        q: &TensorView,
        weights: &TensorView,
        k_cache: &TensorView,
        block_table: &TensorView,
        context_lens: &TensorView,
        logits: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe {
            sys::dsa_indexer_logits_paged(
                self.as_raw(),
                params.as_ptr(),
                q.as_raw(),
                weights.as_raw(),
                k_cache.as_raw(),
                block_table.as_raw(),
                context_lens.as_raw(),
                logits.as_raw(),
                stream.as_raw(),
            )
        })
    }

    /// Quantises keys k [T, D_I] (f32 or bf16) and scatters them into the paged indexer key
    /// cache u8 [num_pages, 64 * (D_I + 4)] at the slots slot_mapping i64 [T]
    /// (`dsa_indexer_cache_write`; negative or out-of-range slots are skipped).
    pub fn indexer_cache_write(
        &self,
        k: &TensorView,
        slot_mapping: &TensorView,
        k_cache: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        Error::check(unsafe {
            sys::dsa_indexer_cache_write(self.as_raw(), k.as_raw(), slot_mapping.as_raw(), k_cache.as_raw(), stream.as_raw())
        })
    }

    /// Sparse MLA attention, prefill form (`dsa_sparse_attention`): q bf16 [S_q, H_q, d_qk],
    /// kv bf16 [S_kv, d_qk], indices i32 [S_q, k] (invalid ones skipped), attn_sink f32 [H_q] or
    /// `None`, topk_length i32 [S_q] or `None`, into out bf16 [S_q, H_q, d_v], lse f32 [S_q, H_q]
    /// and, unless `None`, max_logits f32 [S_q, H_q]. The params are required (scale has no
    /// default).
    #[allow(clippy::too_many_arguments)]
    pub fn sparse_attention(
        &self,
        params: &SparseAttentionParams,
        q: &TensorView,
        kv: &TensorView,
        indices: &TensorView,
        attn_sink: Option<&TensorView>,
        topk_length: Option<&TensorView>,
        out: &mut TensorViewMut,
        lse: &mut TensorViewMut,
        max_logits: Option<&mut TensorViewMut>,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(Some(params));
        Error::check(unsafe {
            sys::dsa_sparse_attention(
                self.as_raw(),
                params.as_ptr(),
                q.as_raw(),
                kv.as_raw(),
                indices.as_raw(),
                optional(attn_sink),
                optional(topk_length),
                out.as_raw(),
                lse.as_raw(),
                optional_mut(max_logits),
                stream.as_raw(),
            )
        })
    }

    /// Sparse MLA attention over a paged KV cache (`dsa_sparse_attention_paged`): q bf16
    /// [B, s_q, H_q, d_qk], kv_cache bf16 [num_pages, page_size, d_qk] or the FP8 MLA cache u8
    /// [num_pages, page_size, 656], indices i32 [B, s_q, k] of physical slots, attn_sink f32 [H_q]
    /// or `None`, topk_length i32 [B, s_q] or `None`, into out bf16 [B, s_q, H_q, d_v] and lse
    /// f32 [B, s_q, H_q].
    #[allow(clippy::too_many_arguments)]
    pub fn sparse_attention_paged(
        &self,
        params: &SparseAttentionParams,
        q: &TensorView,
        kv_cache: &TensorView,
        indices: &TensorView,
        attn_sink: Option<&TensorView>,
        topk_length: Option<&TensorView>,
        out: &mut TensorViewMut,
        lse: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(Some(params));
        Error::check(unsafe {
            sys::dsa_sparse_attention_paged(
                self.as_raw(),
                params.as_ptr(),
                q.as_raw(),
                kv_cache.as_raw(),
                indices.as_raw(),
                optional(attn_sink),
                optional(topk_length),
                out.as_raw(),
                lse.as_raw(),
                stream.as_raw(),
            )
        })
    }

    /// Writes T tokens into the FP8 MLA cache u8 [num_pages, page_size, 656]
    /// (`dsa_mla_cache_write`): c_kv [T, 512] and k_pe [T, 64] (both f32 or both bf16) at the
    /// slots slot_mapping i64 [T] (out-of-range slots skipped).
    pub fn mla_cache_write(
        &self,
        c_kv: &TensorView,
        k_pe: &TensorView,
        slot_mapping: &TensorView,
        kv_cache: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        Error::check(unsafe {
            sys::dsa_mla_cache_write(
                self.as_raw(),
                c_kv.as_raw(),
                k_pe.as_raw(),
                slot_mapping.as_raw(),
                kv_cache.as_raw(),
                stream.as_raw(),
            )
        })
    }

    /// The C `workspace, workspace_bytes` arguments: NULL and 0 for `None`. A workspace on
    /// another device than the context's is refused here, because libdsa cannot tell.
    fn workspace_parts(&self, workspace: Option<&mut Workspace>) -> Result<(*mut c_void, usize)> {
        let workspace = match workspace {
            Some(workspace) => workspace,
            None => return Ok((ptr::null_mut(), 0)),
        };
        let device = self.device()?;
        if workspace.device != device {
            return Err(Error::new(
                Status::DeviceMismatch,
                format!("workspace: on {:?}, the context on {device:?}", workspace.device),
            ));
        }
        Ok((workspace.data, workspace.bytes))
    }

    /// The scratch bytes [`Context::indexer_topk`] and [`Context::indexer_topk_paged`] need for
    /// `num_queries` query rows over `num_tokens` key tokens (S_kv; paged: max_pages * 64)
    /// (`dsa_indexer_topk_workspace_size`).
    pub fn indexer_topk_workspace_size(&self, num_queries: i64, num_tokens: i64) -> Result<usize> {
        let mut bytes = 0;
        Error::check(unsafe { sys::dsa_indexer_topk_workspace_size(self.as_raw(), num_queries, num_tokens, &mut bytes) })?;
        Ok(bytes)
    }

    /// Fused lightning indexer + top-k, ragged prefill (`dsa_indexer_topk`): the indices i32
    /// [S_q, k] that [`Context::indexer_logits`] then [`Context::topk`] (windows [ks, ke)) would
    /// give, without the [S_q, S_kv] logits.
    #[allow(clippy::too_many_arguments)]
    pub fn indexer_topk(
        &self,
        indexer_params: Option<&IndexerParams>,
        topk_params: Option<&TopkParams>,
        q: &TensorView,
        weights: &TensorView,
        k: &TensorView,
        k_scale: &TensorView,
        ks: &TensorView,
        ke: &TensorView,
        indices: &mut TensorViewMut,
        workspace: Option<&mut Workspace>,
        stream: Stream,
    ) -> Result<()> {
        let (indexer_params, topk_params) = (raw_params(indexer_params), raw_params(topk_params));
        let (workspace, workspace_bytes) = self.workspace_parts(workspace)?;
        Error::check(unsafe {
            sys::dsa_indexer_topk(
                self.as_raw(),
                indexer_params.as_ptr(),
                topk_params.as_ptr(),
                q.as_raw(),
                weights.as_raw(),
                k.as_raw(),
                k_scale.as_raw(),
                ks.as_raw(),
                ke.as_raw(),
                indices.as_raw(),
                workspace,
                workspace_bytes,
                stream.as_raw(),
            )
        })
    }

    /// Fused lightning indexer + top-k, paged decode (`dsa_indexer_topk_paged`): token positions
    /// into `indices` and/or physical cache slots into `slots` (at least one; i32
    /// [B * n_next, k]), as [`Context::indexer_logits_paged`] then [`Context::topk`] would.
    #[allow(clippy::too_many_arguments)]
    pub fn indexer_topk_paged(
        &self,
        indexer_params: Option<&IndexerParams>,
        topk_params: Option<&TopkParams>,
        q: &TensorView,
        weights: &TensorView,
        k_cache: &TensorView,
        block_table: &TensorView,
        context_lens: &TensorView,
        indices: Option<&mut TensorViewMut>,
        slots: Option<&mut TensorViewMut>,
        workspace: Option<&mut Workspace>,
        stream: Stream,
    ) -> Result<()> {
        let (indexer_params, topk_params) = (raw_params(indexer_params), raw_params(topk_params));
        let (workspace, workspace_bytes) = self.workspace_parts(workspace)?;
        Error::check(unsafe {
            sys::dsa_indexer_topk_paged(
                self.as_raw(),
                indexer_params.as_ptr(),
                topk_params.as_ptr(),
                q.as_raw(),
                weights.as_raw(),
                k_cache.as_raw(),
                block_table.as_raw(),
                context_lens.as_raw(),
                optional_mut(indices),
                optional_mut(slots),
                workspace,
                workspace_bytes,
                stream.as_raw(),
            )
        })
    }

    /// The scratch bytes of [`Context::attention`] and [`Context::attention_paged`] for
    /// `num_queries` query rows over `num_tokens` key tokens (paged: max_pages * 64) with the k of
    /// `topk_params` (`dsa_attention_workspace_size`).
    pub fn attention_workspace_size(&self, topk_params: Option<&TopkParams>, num_queries: i64, num_tokens: i64) -> Result<usize> {
        let topk_params = raw_params(topk_params);
        let mut bytes = 0;
        Error::check(unsafe {
            sys::dsa_attention_workspace_size(self.as_raw(), topk_params.as_ptr(), num_queries, num_tokens, &mut bytes)
        })?;
        Ok(bytes)
    }

    /// One DSA layer step, ragged prefill (`dsa_attention`): indexer (index_q, index_weights,
    /// index_k, index_k_scale, windows [ks, ke)) -> top-k -> sparse MLA attention (q, kv,
    /// attn_sink) into out and lse; `selected` i32 [S_q, k], unless `None`, receives the indices
    /// used. The attention params are required (scale has no default).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        indexer_params: Option<&IndexerParams>,
        topk_params: Option<&TopkParams>,
        attention_params: &SparseAttentionParams,
        index_q: &TensorView,
        index_weights: &TensorView,
        index_k: &TensorView,
        index_k_scale: &TensorView,
        ks: &TensorView,
        ke: &TensorView,
        q: &TensorView,
        kv: &TensorView,
        attn_sink: Option<&TensorView>,
        out: &mut TensorViewMut,
        lse: &mut TensorViewMut,
        selected: Option<&mut TensorViewMut>,
        workspace: Option<&mut Workspace>,
        stream: Stream,
    ) -> Result<()> {
        let (indexer_params, topk_params) = (raw_params(indexer_params), raw_params(topk_params));
        let attention_params = raw_params(Some(attention_params));
        let (workspace, workspace_bytes) = self.workspace_parts(workspace)?;
        Error::check(unsafe {
            sys::dsa_attention(
                self.as_raw(),
                indexer_params.as_ptr(),
                topk_params.as_ptr(),
                attention_params.as_ptr(),
                index_q.as_raw(),
                index_weights.as_raw(),
                index_k.as_raw(),
                index_k_scale.as_raw(),
                ks.as_raw(),
                ke.as_raw(),
                q.as_raw(),
                kv.as_raw(),
                optional(attn_sink),
                out.as_raw(),
                lse.as_raw(),
                optional_mut(selected),
                workspace,
                workspace_bytes,
                stream.as_raw(),
            )
        })
    }

    /// One DSA layer step, paged decode (`dsa_attention_paged`): fused indexer + top-k over the
    /// indexer key cache (block_table, context_lens) -> physical slots -> sparse MLA attention
    /// over kv_cache (pages of 64 tokens, bf16 or the FP8 MLA cache) into out and lse;
    /// `selected` i32 [B * n_next, k], unless `None`, receives the slots used.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_paged(
        &self,
        indexer_params: Option<&IndexerParams>,
        topk_params: Option<&TopkParams>,
        attention_params: &SparseAttentionParams,
        index_q: &TensorView,
        index_weights: &TensorView,
        index_k_cache: &TensorView,
        block_table: &TensorView,
        context_lens: &TensorView,
        q: &TensorView,
        kv_cache: &TensorView,
        attn_sink: Option<&TensorView>,
        out: &mut TensorViewMut,
        lse: &mut TensorViewMut,
        selected: Option<&mut TensorViewMut>,
        workspace: Option<&mut Workspace>,
        stream: Stream,
    ) -> Result<()> {
        let (indexer_params, topk_params) = (raw_params(indexer_params), raw_params(topk_params));
        let attention_params = raw_params(Some(attention_params));
        let (workspace, workspace_bytes) = self.workspace_parts(workspace)?;
        Error::check(unsafe {
            sys::dsa_attention_paged(
                self.as_raw(),
                indexer_params.as_ptr(),
                topk_params.as_ptr(),
                attention_params.as_ptr(),
                index_q.as_raw(),
                index_weights.as_raw(),
                index_k_cache.as_raw(),
                block_table.as_raw(),
                context_lens.as_raw(),
                q.as_raw(),
                kv_cache.as_raw(),
                optional(attn_sink),
                out.as_raw(),
                lse.as_raw(),
                optional_mut(selected),
                workspace,
                workspace_bytes,
                stream.as_raw(),
            )
        })
    }

    /// Indexer distillation loss, forward and backward (`dsa_indexer_loss`): the KL divergence
    /// of the student softmax over I = sum_h w_h ReLU(index_q . index_k) from the teacher (the
    /// head mean of softmax(teacher_scale * teacher_q . teacher_k), or `teacher_probs`
    /// renormalised), per row over its window (DENSE) or its in-window `indices` (SPARSE), and
    /// the gradients of loss = coeff * mean over active rows. Pass the teacher as `teacher_q`
    /// and `teacher_k`, or as `teacher_probs`; every output is optional. See dsa.h for shapes,
    /// inactive rows and statuses.
    #[allow(clippy::too_many_arguments)]
    pub fn indexer_loss(
        &self,
        params: Option<&IndexerLossParams>,
        index_q: &TensorView,
        index_k: &TensorView,
        weights: &TensorView,
        ks: &TensorView,
        ke: &TensorView,
        indices: Option<&TensorView>,
        teacher_q: Option<&TensorView>,
        teacher_k: Option<&TensorView>,
        teacher_probs: Option<&TensorView>,
        loss: Option<&mut TensorViewMut>,
        row_loss: Option<&mut TensorViewMut>,
        d_index_q: Option<&mut TensorViewMut>,
        d_index_k: Option<&mut TensorViewMut>,
        d_weights: Option<&mut TensorViewMut>,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe {
            sys::dsa_indexer_loss(
                self.as_raw(),
                params.as_ptr(),
                index_q.as_raw(),
                index_k.as_raw(),
                weights.as_raw(),
                ks.as_raw(),
                ke.as_raw(),
                optional(indices),
                optional(teacher_q),
                optional(teacher_k),
                optional(teacher_probs),
                optional_mut(loss),
                optional_mut(row_loss),
                optional_mut(d_index_q),
                optional_mut(d_index_k),
                optional_mut(d_weights),
                stream.as_raw(),
            )
        })
    }

    /// The scratch bytes [`Context::sparse_attention_backward`] needs for `num_queries` rows of
    /// `topk` indices over `num_tokens` KV rows of `d_qk` values
    /// (`dsa_sparse_attention_backward_workspace_size`).
    pub fn sparse_attention_backward_workspace_size(
        &self,
        params: Option<&SparseAttentionBackwardParams>,
        num_queries: i64,
        topk: i64,
        num_tokens: i64,
        d_qk: i64,
    ) -> Result<usize> {
        let params = raw_params(params);
        let mut bytes = 0;
        Error::check(unsafe {
            sys::dsa_sparse_attention_backward_workspace_size(self.as_raw(), params.as_ptr(), num_queries, topk, num_tokens, d_qk, &mut bytes)
        })?;
        Ok(bytes)
    }

    /// Backward pass of [`Context::sparse_attention`] (`dsa_sparse_attention_backward`): from q
    /// [S_q, H_q, d_qk] and kv [S_kv, d_qk] (bf16 or f32), indices i32 [S_q, k], the optional
    /// attn_sink f32 [H_q] and topk_length i32 [S_q], the forward's out and lse, and dout
    /// [S_q, H_q, d_v], writes dq [S_q, H_q, d_qk] (f32 or bf16), dkv f32 [S_kv, d_qk] and, when
    /// given (only with a sink), d_attn_sink f32 [H_q]. `params` is required (its scale has no
    /// default). See dsa.h for empty rows, modes and statuses.
    #[allow(clippy::too_many_arguments)]
    pub fn sparse_attention_backward(
        &self,
        params: &SparseAttentionBackwardParams,
        q: &TensorView,
        kv: &TensorView,
        indices: &TensorView,
        attn_sink: Option<&TensorView>,
        topk_length: Option<&TensorView>,
        out: &TensorView,
        lse: &TensorView,
        dout: &TensorView,
        dq: &mut TensorViewMut,
        dkv: &mut TensorViewMut,
        d_attn_sink: Option<&mut TensorViewMut>,
        workspace: Option<&mut Workspace>,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(Some(params));
        let (workspace, workspace_bytes) = self.workspace_parts(workspace)?;
        Error::check(unsafe {
            sys::dsa_sparse_attention_backward(
                self.as_raw(),
                params.as_ptr(),
                q.as_raw(),
                kv.as_raw(),
                indices.as_raw(),
                optional(attn_sink),
                optional(topk_length),
                out.as_raw(),
                lse.as_raw(),
                dout.as_raw(),
                dq.as_raw(),
                dkv.as_raw(),
                optional_mut(d_attn_sink),
                workspace,
                workspace_bytes,
                stream.as_raw(),
            )
        })
    }
}

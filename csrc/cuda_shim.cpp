// rhx CUDA shim: the few libtorch CUDA entry points that `tch` does not expose — CUDA graphs
// (at::cuda::CUDAGraph), a side stream to capture on, the caching allocator's statistics, and
// device properties. Built by build.rs into a shared library that is embedded in the rhx binary
// and dlopen'ed only after libtorch_cuda.so is loaded (RTLD_GLOBAL), so its undefined symbols
// resolve there and CPU-only runs never touch it. Every function returns 0 on success and -1 on
// failure, with the message in rhx_shim_last_error().
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#include <optional>
#include <string>
#include <cstring>

static thread_local std::string last_error;
static std::optional<c10::cuda::CUDAStream> side_stream;
static std::optional<c10::cuda::CUDAStream> saved_stream;

#define GUARD(...)                                    \
  try {                                               \
    __VA_ARGS__;                                           \
    return 0;                                         \
  } catch (const std::exception& e) {                 \
    last_error = e.what();                            \
    return -1;                                        \
  } catch (...) {                                     \
    last_error = "unknown C++ exception";             \
    return -1;                                        \
  }

extern "C" {

const char* rhx_shim_last_error() { return last_error.c_str(); }

int rhx_shim_version() { return 2; }

// The CUDA stream libtorch's ops on `device` are queued on now (the side stream while a graph is
// captured), for kernels launched through the driver API (src/engine/kernels.rs).
// (The legacy default stream is the null pointer.)
int rhx_current_stream(int device, void** out) {
  GUARD(*out = (void*)c10::cuda::getCurrentCUDAStream((c10::DeviceIndex)device).stream())
}

// Makes a (lazily created) side stream of `device` current, after it waits for the work already
// queued on the current stream. Graph capture must not run on the legacy default stream.
int rhx_side_stream_enter(int device) {
  GUARD({
    c10::cuda::CUDAGuard g((c10::DeviceIndex)device);
    auto cur = c10::cuda::getCurrentCUDAStream((c10::DeviceIndex)device);
    if (!side_stream) side_stream = c10::cuda::getStreamFromPool(false, (c10::DeviceIndex)device);
    saved_stream = cur;
    cudaEvent_t ev;
    C10_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    C10_CUDA_CHECK(cudaEventRecord(ev, cur.stream()));
    C10_CUDA_CHECK(cudaStreamWaitEvent(side_stream->stream(), ev, 0));
    C10_CUDA_CHECK(cudaEventDestroy(ev));
    c10::cuda::setCurrentCUDAStream(*side_stream);
  })
}

// Restores the stream saved by rhx_side_stream_enter, which waits for the side stream's work.
int rhx_side_stream_exit() {
  GUARD({
    if (!saved_stream || !side_stream) throw std::runtime_error("rhx_side_stream_exit without enter");
    cudaEvent_t ev;
    C10_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    C10_CUDA_CHECK(cudaEventRecord(ev, side_stream->stream()));
    C10_CUDA_CHECK(cudaStreamWaitEvent(saved_stream->stream(), ev, 0));
    C10_CUDA_CHECK(cudaEventDestroy(ev));
    c10::cuda::setCurrentCUDAStream(*saved_stream);
    saved_stream.reset();
  })
}

void* rhx_graph_new() {
  try {
    return new at::cuda::CUDAGraph();
  } catch (const std::exception& e) {
    last_error = e.what();
    return nullptr;
  }
}

void rhx_graph_free(void* g) { delete static_cast<at::cuda::CUDAGraph*>(g); }

// Captures on the current stream (call rhx_side_stream_enter first). Thread-local capture mode:
// other threads' CUDA calls are not affected.
int rhx_graph_capture_begin(void* g) {
  GUARD(static_cast<at::cuda::CUDAGraph*>(g)->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal))
}

int rhx_graph_capture_end(void* g) { GUARD(static_cast<at::cuda::CUDAGraph*>(g)->capture_end()) }

int rhx_graph_replay(void* g) { GUARD(static_cast<at::cuda::CUDAGraph*>(g)->replay()) }

int rhx_synchronize(int device) {
  GUARD({
    c10::cuda::CUDAGuard g((c10::DeviceIndex)device);
    C10_CUDA_CHECK(cudaDeviceSynchronize());
  })
}

// Caching-allocator statistics (bytes): allocated now, peak allocated, reserved now, peak reserved.
int rhx_memory_stats(int device, int64_t* out4) {
  GUARD({
    auto s = c10::cuda::CUDACachingAllocator::getDeviceStats((c10::DeviceIndex)device);
    auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out4[0] = s.allocated_bytes[agg].current;
    out4[1] = s.allocated_bytes[agg].peak;
    out4[2] = s.reserved_bytes[agg].current;
    out4[3] = s.reserved_bytes[agg].peak;
  })
}

int rhx_reset_peak(int device) {
  GUARD(c10::cuda::CUDACachingAllocator::resetPeakStats((c10::DeviceIndex)device))
}

int rhx_empty_cache() { GUARD(c10::cuda::CUDACachingAllocator::emptyCache()) }

// Free and total device memory (cudaMemGetInfo) and the device name.
int rhx_device_info(int device, int64_t* free_total, char* name, int name_len) {
  GUARD({
    c10::cuda::CUDAGuard g((c10::DeviceIndex)device);
    size_t f = 0, t = 0;
    C10_CUDA_CHECK(cudaMemGetInfo(&f, &t));
    free_total[0] = (int64_t)f;
    free_total[1] = (int64_t)t;
    cudaDeviceProp p;
    C10_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    std::strncpy(name, p.name, name_len - 1);
    name[name_len - 1] = 0;
  })
}

}  // extern "C"

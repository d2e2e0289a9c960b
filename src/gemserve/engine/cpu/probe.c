/* Execute one x86 instruction family and check its result: `probe FEATURE`.
 *
 * CPUID can claim what the CPU (or the hypervisor in front of it) will not run, and a
 * compiler can emit code for a family that traps where the family itself would run (AMX
 * under GCC 12, below). So the build asks the instructions themselves, compiled by the
 * compiler that will build llama.cpp, each in its own child process.
 *
 * Exit status: 0 the instructions ran and computed the right answer; 1 a wrong answer;
 * 2 the OS refused the state the feature needs (AMX tile data); 64 usage. A trap kills the
 * process by a signal (SIGILL), which the caller sees as such.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

__attribute__((target("avx2,fma"))) static int probe_avx2(void) {
    int32_t a[8], out[8];
    for (int i = 0; i < 8; i++) a[i] = i;
    __m256i v = _mm256_loadu_si256((const __m256i *)a);
    _mm256_storeu_si256((__m256i *)out, _mm256_add_epi32(v, v));
    __m256 f = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), _mm256_set1_ps(3.0f), _mm256_set1_ps(1.0f));
    float g[8];
    _mm256_storeu_ps(g, f);
    return out[7] == 14 && g[0] == 7.0f ? 0 : 1;
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) static int probe_avx512(void) {
    int32_t a[16], out[16];
    for (int i = 0; i < 16; i++) a[i] = i;
    __m512i v = _mm512_loadu_si512(a);
    _mm512_storeu_si512(out, _mm512_add_epi32(v, v));
    return out[15] == 30 ? 0 : 1;
}

__attribute__((target("avx512f,avx512vnni"))) static int probe_avx512_vnni(void) {
    __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(2), _mm512_set1_epi8(3));
    int32_t out[16];
    _mm512_storeu_si512(out, acc);
    return out[0] == 24 ? 0 : 1;
}

__attribute__((target("avxvnni"))) static int probe_avx_vnni(void) {
    __m256i acc = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(2), _mm256_set1_epi8(3));
    int32_t out[8];
    _mm256_storeu_si256((__m256i *)out, acc);
    return out[0] == 24 ? 0 : 1;
}

struct tile_config {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* One int8 tile product, C (16x16 int32) += A (16x64 int8) . B (16x64 int8, VNNI layout),
 * the operation ggml's AMX kernels are built on.
 *
 * The tile configuration is written as ggml writes it (ggml_tile_config_init in
 * ggml-cpu/amx/mmq.cpp): a zero-initialised local whose fields are set one by one, then
 * `_tile_loadconfig`. GCC 12's intrinsic tells the compiler that it reads only the first
 * 8 bytes of the configuration, so the stores to `rows` and `colsb` are dropped as dead,
 * every tile is left unconfigured, and the first tile instruction traps (SIGILL,
 * ILL_ILLOPN) on every AMX CPU, in this probe as in llama.cpp's first batched product.
 * (The configuration lives in a function of its own, as in ggml: where later tile
 * instructions share its scope, their memory clobbers keep the stores alive.) */
__attribute__((target("amx-tile"), noinline)) static void load_tile_config(void) {
    _Alignas(64) struct tile_config cfg = {0};
    cfg.palette_id = 1;
    cfg.rows[0] = 16;
    cfg.colsb[0] = 64;
    cfg.rows[1] = 16;
    cfg.colsb[1] = 64;
    cfg.rows[2] = 16;
    cfg.colsb[2] = 64;
    _tile_loadconfig(&cfg);
}

__attribute__((target("amx-tile,amx-int8"))) static int probe_amx(void) {
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 2;
    static int8_t a[16 * 64], b[16 * 64];
    static int32_t c[16 * 16];
    memset(a, 1, sizeof a);
    memset(b, 2, sizeof b);
    load_tile_config();
    _tile_zero(0);
    _tile_loadd(1, a, 64);
    _tile_loadd(2, b, 64);
    _tile_dpbssd(0, 1, 2);
    _tile_stored(0, c, 64);
    _tile_release();
    return c[0] == 128 && c[255] == 128 ? 0 : 1;
}

/* The tile instructions without asking the kernel for the tile state first: Linux answers
 * with SIGILL on every x86 CPU, AMX or not. It lets tests see a real trap. */
__attribute__((target("amx-tile"))) static int probe_amx_unrequested(void) {
    struct tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    cfg.rows[0] = 16;
    cfg.colsb[0] = 64;
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_release();
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s avx2|avx512|avx512_vnni|avx_vnni|amx\n", argv[0]);
        return 64;
    }
    const char *feature = argv[1];
    if (strcmp(feature, "avx2") == 0) return probe_avx2();
    if (strcmp(feature, "avx512") == 0) return probe_avx512();
    if (strcmp(feature, "avx512_vnni") == 0) return probe_avx512_vnni();
    if (strcmp(feature, "avx_vnni") == 0) return probe_avx_vnni();
    if (strcmp(feature, "amx") == 0) return probe_amx();
    if (strcmp(feature, "amx_unrequested") == 0) return probe_amx_unrequested();
    fprintf(stderr, "unknown feature %s\n", feature);
    return 64;
}

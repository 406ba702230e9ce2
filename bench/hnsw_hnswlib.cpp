// hnsw_hnswlib.cpp — hnswlib peer of the HNSW benchmark (bench/hnsw_run.sh).
//
// Built from Debian's libhnswlib-dev headers with g++ -O3 -march=native:
//   g++ -O3 -march=native -std=c++17 -pthread -o hnsw_hnswlib hnsw_hnswlib.cpp
//
//   hnsw_hnswlib --data DIR --out DIR [--threads 1,2] [--m 16] [--efc 200]
//                [--ef 10,16,...] [--k 10] [--repeat 3] [--first-ef 64]
//                [--index FILE]
//
// For each thread count it builds the index from DIR/base.fvecs (addPoint,
// label = base row, file order; the first point alone, then the rest from T
// threads pulling rows off one atomic counter) and prints a BUILD line. The
// last build is saved to OUT/hnswlib.index, freed, loaded back and queried
// once (REOPEN line: load + first query), then every ef of the sweep runs
// the whole query set --repeat times, one query at a time on this thread,
// each query timed alone (SEARCH line: QPS = queries / summed latency,
// median of the passes). The first pass's ids go to OUT/ids/hnswlib.efE.i32
// (nq x k int32, 0-based base rows, -1 for a missing hit); hnsw_report.py
// computes recall from them. Lines are "TAG key=value ...".
// --index FILE keeps the built index in FILE instead of deleting it, and
// when FILE exists loads it and skips the builds (query-only reruns).
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <time.h>
#include <vector>

namespace {

struct Vecs {
  size_t n = 0;
  int dim = 0;
  std::vector<float> data;  // n * dim
};

[[noreturn]] void die(const std::string &msg) {
  std::fprintf(stderr, "hnsw_hnswlib: %s\n", msg.c_str());
  std::exit(1);
}

// TEXMEX .fvecs: per row int32 dim, then dim float32.
Vecs read_fvecs(const std::string &path) {
  FILE *f = std::fopen(path.c_str(), "rb");
  if (!f) die("cannot open " + path);
  Vecs v;
  int32_t d = 0;
  if (std::fread(&d, 4, 1, f) != 1 || d <= 0) die("bad header in " + path);
  std::fseek(f, 0, SEEK_END);
  long bytes = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  size_t row = 4 + 4 * (size_t)d;
  if (bytes % (long)row) die(path + ": size is not a multiple of a row");
  v.dim = d;
  v.n = (size_t)bytes / row;
  v.data.resize(v.n * (size_t)d);
  for (size_t i = 0; i < v.n; i++) {
    int32_t di;
    if (std::fread(&di, 4, 1, f) != 1 || di != d) die(path + ": ragged rows");
    if (std::fread(&v.data[i * d], 4, (size_t)d, f) != (size_t)d)
      die(path + ": short read");
  }
  std::fclose(f);
  return v;
}

// CPU seconds of this process (all threads) or of the calling thread.
double cpu_s(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// VmRSS / VmHWM of this process in kB.
long proc_status_kb(const char *key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':')
      return std::atol(line.c_str() + n + 1);
  }
  return -1;
}

long long file_bytes(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? (long long)st.st_size : -1;
}

std::vector<int> parse_list(const std::string &s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ','))
    if (!tok.empty()) out.push_back(std::atoi(tok.c_str()));
  return out;
}

struct Opts {
  std::string data, out, index; // index: keep the built graph there, or load it
  std::vector<int> threads{1};
  std::vector<int> efs{10, 16, 24, 32, 40, 48, 64, 96, 128, 192, 256};
  int m = 16, efc = 200, k = 10, repeat = 3, firstEf = 64;
};

Opts parse_opts(int argc, char **argv) {
  Opts o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) die("missing value for " + a);
    std::string v = argv[++i];
    if (a == "--data") o.data = v;
    else if (a == "--out") o.out = v;
    else if (a == "--threads") o.threads = parse_list(v);
    else if (a == "--ef") o.efs = parse_list(v);
    else if (a == "--m") o.m = std::atoi(v.c_str());
    else if (a == "--efc") o.efc = std::atoi(v.c_str());
    else if (a == "--k") o.k = std::atoi(v.c_str());
    else if (a == "--repeat") o.repeat = std::atoi(v.c_str());
    else if (a == "--first-ef") o.firstEf = std::atoi(v.c_str());
    else if (a == "--index") o.index = v;
    else die("unknown option " + a);
  }
  if (o.data.empty() || o.out.empty() || o.threads.empty() || o.efs.empty())
    die("usage: hnsw_hnswlib --data DIR --out DIR [--threads 1,2] [--ef ...] "
        "[--index FILE]");
  return o;
}

using Index = hnswlib::HierarchicalNSW<float>;

// Build from a fresh read of the base file; the driver's copy of the vectors
// is freed before RSS is read, so rss_kb is the index's (plus the queries).
Index *build(const Opts &o, hnswlib::L2Space &space, int nThreads) {
  Vecs base = read_fvecs(o.data + "/base.fvecs");
  if ((size_t)base.dim * sizeof(float) != space.get_data_size())
    die("query and base dimensions differ");
  double t0 = now_s(), c0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
  Index *idx = new Index(&space, base.n, (size_t)o.m, (size_t)o.efc);
  const float *x = base.data.data();
  const size_t d = (size_t)base.dim;
  idx->addPoint(x, 0);  // the entry point first, as hnswlib's bindings do
  std::atomic<size_t> next{1};
  auto work = [&]() {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= base.n) return;
      idx->addPoint(x + i * d, (hnswlib::labeltype)i);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < nThreads; t++) pool.emplace_back(work);
  work();
  for (auto &th : pool) th.join();
  double s = now_s() - t0, c = cpu_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
  const size_t n = base.n;
  const int dim = base.dim;
  std::vector<float>().swap(base.data);
  std::printf(
      "BUILD system=hnswlib threads=%d n=%zu dim=%d m=%d efc=%d build_s=%.3f "
      "cpu_s=%.3f raw_bytes=%zu rss_kb=%ld hwm_kb=%ld\n",
      nThreads, n, dim, o.m, o.efc, s, c, n * d * 4,
      proc_status_kb("VmRSS"), proc_status_kb("VmHWM"));
  std::fflush(stdout);
  return idx;
}

// One query: k nearest, nearest first, into ids (-1 padded).
void query(Index *idx, const float *q, int k, int32_t *ids) {
  auto pq = idx->searchKnn(q, (size_t)k);
  int n = (int)pq.size();
  for (int j = n; j < k; j++) ids[j] = -1;
  for (int j = n - 1; j >= 0; j--) {
    ids[j] = (int32_t)pq.top().second;
    pq.pop();
  }
}

void sweep(const Opts &o, Index *idx, const Vecs &qs) {
  const int k = o.k;
  std::vector<int32_t> ids(qs.n * (size_t)k), scratch((size_t)k);
  std::vector<double> lat(qs.n * (size_t)o.repeat);
  for (int ef : o.efs) {
    idx->setEf((size_t)ef);
    for (int w = 0; w < 5; w++)  // warm-up
      query(idx, &qs.data[(size_t)(w % qs.n) * qs.dim], k, scratch.data());
    std::vector<double> qps, qpsCpu;
    for (int p = 0; p < o.repeat; p++) {
      double sum = 0, c0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
      for (size_t i = 0; i < qs.n; i++) {
        int32_t *dst = p == 0 ? &ids[i * k] : scratch.data();
        double t0 = now_s();
        query(idx, &qs.data[i * qs.dim], k, dst);
        double dt = now_s() - t0;
        lat[(size_t)p * qs.n + i] = 1e6 * dt;
        sum += dt;
      }
      qps.push_back((double)qs.n / sum);
      qpsCpu.push_back((double)qs.n / (cpu_s(CLOCK_THREAD_CPUTIME_ID) - c0));
    }
    std::sort(qpsCpu.begin(), qpsCpu.end());
    std::vector<double> q2 = qps, l2 = lat;
    std::sort(q2.begin(), q2.end());
    std::sort(l2.begin(), l2.end());
    double p50 = l2[(size_t)(0.50 * (l2.size() - 1))];
    double p99 = l2[(size_t)(0.99 * (l2.size() - 1))];
    std::string path = o.out + "/ids/hnswlib.ef" + std::to_string(ef) + ".i32";
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(ids.data(), 4, ids.size(), f) != ids.size())
      die("cannot write " + path);
    std::fclose(f);
    std::printf("SEARCH system=hnswlib ef=%d queries=%zu k=%d qps=%.1f "
                "qps_passes=",
                ef, qs.n, k, q2[q2.size() / 2]);
    for (size_t p = 0; p < qps.size(); p++)
      std::printf("%s%.1f", p ? "," : "", qps[p]);
    std::printf(" qps_cpu=%.1f p50_us=%.1f p99_us=%.1f ids=%s\n",
                qpsCpu[qpsCpu.size() / 2], p50, p99, path.c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char **argv) {
  Opts o = parse_opts(argc, argv);
  Vecs qs = read_fvecs(o.data + "/query.fvecs");
  mkdir(o.out.c_str(), 0755);
  mkdir((o.out + "/ids").c_str(), 0755);
  hnswlib::L2Space space((size_t)qs.dim);
  Index *idx = nullptr;
  // --index FILE: an existing FILE is loaded instead of building (quick
  // query-only comparisons); otherwise the build is kept there.
  std::string file = o.index.empty() ? o.out + "/hnswlib.index" : o.index;
  if (o.index.empty() || file_bytes(file) <= 0) {
    for (int t : o.threads) {
      delete idx;
      idx = nullptr;
      idx = build(o, space, t);
    }
    // Save, free, load back: the reopen a library user does.
    idx->saveIndex(file);
    delete idx;
  }
  long long bytes = file_bytes(file);
  double t0 = now_s();
  idx = new Index(&space, file);
  double t1 = now_s();
  std::vector<int32_t> one((size_t)o.k);
  idx->setEf((size_t)o.firstEf);
  query(idx, qs.data.data(), o.k, one.data());
  double t2 = now_s();
  std::printf("REOPEN system=hnswlib index_bytes=%lld open_ms=%.3f "
              "first_query_ms=%.3f first_ef=%d\n",
              bytes, 1e3 * (t1 - t0), 1e3 * (t2 - t1), o.firstEf);
  std::fflush(stdout);
  if (o.index.empty()) std::remove(file.c_str());
  sweep(o, idx, qs);
  delete idx;
  return 0;
}

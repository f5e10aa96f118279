// catchup_bench: the time to copy one shard of N events (default 10k) into a fresh journal with
// the catch-up stream, against references measured in the same run, on the same disk.
//
//   (a) no actors: the shard read page by page from the source journal (read_shard_log) and each
//       page imported into the receiver's journal with a blocking import (one fsync per page):
//       what the copy costs without messaging.
//   (a2) the same without waiting: every page's import queued at once (the journal group-commits
//       them), then all awaited: the floor for any copy into this journal.
//   (b) catch-up inside one actor system (local log server, local worker).
//   (c) catch-up across two actor systems over loopback BASP (CAF's io middleman on 127.0.0.1):
//       the source's log server published on one, the worker on the other. This is the figure;
//       the cluster's goal is <= 1 s for 10k events.
//   (d) one remote request/response round trip over the same connection (1 outstanding, tiny
//       message): the latency a one-page-at-a-time copy would pay per page.
//
// Each round copies the shard once per side into a fresh journal (new temp dir) and checks the
// copy's end; sides alternate so that disk drift hits all alike; medians and minimums are
// printed. Events: appends of 1-3 events of ~200 bytes to 300 ids, snapshots of 1 id in 10.
//
// Usage: catchup_bench [--events N] [--rounds R] [--page P] [--window W] [--dir D]
//        (defaults: 10000 events, 5 rounds, 1000 positions per page, 8 pages in flight,
//        ./bench-data)

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "runtime/message_types.hpp"
#include "runtime/persistence/lmdb_journal.hpp"
#include "runtime/stream/catch_up.hpp"
#include "runtime/stream/log_server.hpp"

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace kontor;

constexpr shard_id bench_shard = 1;

struct settings {
  std::size_t events = 10000;
  int rounds = 5;
  std::uint32_t page = 1000;
  std::size_t window = 8;
  fs::path dir = "bench-data";
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "catchup_bench: %s\n", what.c_str());
  std::exit(1);
}

settings parse(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--events")
      s.events = std::stoul(value());
    else if (arg == "--rounds")
      s.rounds = std::stoi(value());
    else if (arg == "--page")
      s.page = static_cast<std::uint32_t>(std::stoul(value()));
    else if (arg == "--window")
      s.window = std::stoul(value());
    else if (arg == "--dir")
      s.dir = value();
    else
      die("unknown argument " + arg
          + " (usage: catchup_bench [--events N] [--rounds R] [--page P] [--window W] [--dir D])");
  }
  if (s.events == 0 || s.rounds <= 0 || s.page == 0 || s.window == 0)
    die("--events, --rounds, --page and --window must be positive");
  return s;
}

std::unique_ptr<persistence::journal> open_journal(const fs::path& dir) {
  persistence::lmdb_options opts;
  opts.dir = dir;
  opts.number_of_shards = 4;
  auto j = persistence::open_lmdb_journal(opts);
  if (!j)
    die("open " + dir.string() + ": " + j.error().message);
  return std::move(*j);
}

/// Writes at least `events` events to `bench_shard` (appends of 1-3) and some snapshots.
void fill(persistence::journal& j, std::size_t events) {
  std::mt19937 rng{4711};
  std::map<std::string, sequence_nr> seq;
  std::vector<std::future<persistence::expected<persistence::append_result>>> pending;
  for (std::size_t written = 0; written < events;) {
    const std::string id = "acct-" + std::to_string(rng() % 300);
    const std::size_t n = 1 + rng() % 3;
    persistence::append_request req{bench_shard, id, seq[id] + 1, {}};
    for (std::size_t k = 0; k < n; ++k)
      req.events.push_back(std::string(180 + rng() % 40, static_cast<char>('a' + k)));
    seq[id] += n;
    written += n;
    auto p = std::make_shared<std::promise<persistence::expected<persistence::append_result>>>();
    pending.push_back(p->get_future());
    j.append_async(std::move(req), [p](persistence::expected<persistence::append_result> r) {
      p->set_value(std::move(r));
    });
  }
  for (auto& f : pending)
    if (auto r = f.get(); !r)
      die("fill: " + r.error().message);
  for (const auto& [id, s] : seq)
    if (std::hash<std::string>{}(id) % 10 == 0)
      j.save_snapshot_async(persistence::snapshot{id, s, std::string(300, 's')}, {});
  // A last append makes the snapshots durable with its batch.
  if (!j.append(persistence::append_request{0, "flush", 1, {"f"}}))
    die("fill: flush append failed");
}

/// A fresh directory for one receiver journal, removed afterwards.
struct scratch {
  explicit scratch(const fs::path& parent) {
    std::string tmpl = (parent / "receiver-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      die("mkdtemp in " + parent.string() + ": " + std::strerror(errno));
    path = tmpl;
  }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

double ms_since(clock_type::time_point start) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
}

/// (a) Copies the shard without actors: read a page, import it (blocking), repeat.
double copy_directly(const persistence::journal& src, const fs::path& dir, std::uint32_t page,
                     shard_offset expect) {
  scratch where{dir};
  auto dst = open_journal(where.path / "journal");
  const auto start = clock_type::now();
  for (shard_offset from = 1;;) {
    auto p = src.read_shard_log(bench_shard, from, page);
    if (!p)
      die("read_shard_log: " + p.error().message);
    if (p->events.empty())
      break;
    from = p->next;
    if (auto r = dst->import(persistence::shard_import{bench_shard, std::move(p->events), {}}); !r)
      die("import: " + r.error().message);
  }
  const double ms = ms_since(start);
  if (dst->shard_end(bench_shard).value() != expect)
    die("direct copy ended at the wrong position");
  return ms;
}

/// (a2) Copies the shard without actors, every page's import queued at once (the journal
/// group-commits them), then waits for all: the floor for any copy through this journal.
double copy_pipelined(const persistence::journal& src, const fs::path& dir, std::uint32_t page,
                      shard_offset expect) {
  scratch where{dir};
  auto dst = open_journal(where.path / "journal");
  std::vector<std::future<persistence::expected<persistence::import_result>>> pending;
  const auto start = clock_type::now();
  for (shard_offset from = 1;;) {
    auto p = src.read_shard_log(bench_shard, from, page);
    if (!p)
      die("read_shard_log: " + p.error().message);
    if (p->events.empty())
      break;
    from = p->next;
    auto done = std::make_shared<std::promise<persistence::expected<persistence::import_result>>>();
    pending.push_back(done->get_future());
    dst->import_async(persistence::shard_import{bench_shard, std::move(p->events), {}},
                      [done](persistence::expected<persistence::import_result> r) {
                        done->set_value(std::move(r));
                      });
  }
  for (auto& f : pending)
    if (auto r = f.get(); !r)
      die("import: " + r.error().message);
  const double ms = ms_since(start);
  if (dst->shard_end(bench_shard).value() != expect)
    die("pipelined copy ended at the wrong position");
  return ms;
}

/// (b), (c) Copies the shard with a catch-up from `source` (a log server handle).
double copy_with_catch_up(caf::actor_system& sys, const caf::actor& source, const fs::path& dir,
                          const stream::catch_up_settings& cs, shard_offset expect) {
  scratch where{dir};
  auto dst = open_journal(where.path / "journal");
  const auto start = clock_type::now();
  auto r = stream::run_catch_up(sys, *dst, stream::catch_up_spec{source, bench_shard}, cs);
  const double ms = ms_since(start);
  if (!r.ok())
    die(std::string{"catch-up failed: "} + to_string(r.code) + ": " + r.message);
  if (r.end != expect || dst->shard_end(bench_shard).value() != expect)
    die("catch-up ended at the wrong position");
  return ms;
}

/// (d) Mean microseconds of one remote round trip, 1 outstanding.
double round_trip_us(caf::actor_system& sys, const caf::actor& echo, int n) {
  caf::scoped_actor self{sys};
  const auto start = clock_type::now();
  for (int i = 0; i < n; ++i) {
    bool ok = false;
    self->request(echo, std::chrono::seconds(5), static_cast<std::uint64_t>(i))
      .receive([&](std::uint64_t) { ok = true; }, [&](caf::error&) {});
    if (!ok)
      die("echo round trip failed");
  }
  return 1000.0 * ms_since(start) / n;
}

struct figures {
  std::vector<double> values;
  void add(double v) { values.push_back(v); }
  double median() const {
    auto v = values;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
  double min() const { return *std::min_element(values.begin(), values.end()); }
};

caf::actor_system_config& configure(caf::actor_system_config& cfg) {
  add_message_types(cfg);
  cfg.load<caf::io::middleman>();
  return cfg;
}

} // namespace

int main(int argc, char** argv) {
  const settings s = parse(argc, argv);
  std::error_code ec;
  const bool created_dir = fs::create_directories(s.dir, ec);
  if (ec)
    die("cannot create " + s.dir.string() + ": " + ec.message());
  std::string tmpl = (s.dir / "catchup-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr)
    die("mkdtemp in " + s.dir.string() + ": " + std::strerror(errno));
  const fs::path run_dir = tmpl;

  figures direct, pipelined, local, remote, rtt;
  shard_offset end = 0;
  {
    auto src = open_journal(run_dir / "source");
    fill(*src, s.events);
    end = src->shard_end(bench_shard).value();
    std::printf("catchup_bench: %s, one shard of %llu events (appends of 1-3, ~200 bytes), "
                "%d rounds, pages of %u positions, %zu in flight\n",
                run_dir.c_str(), static_cast<unsigned long long>(end), s.rounds, s.page, s.window);
    std::fflush(stdout);

    caf::actor_system_config source_cfg;
    caf::actor_system source_sys{configure(source_cfg)};
    caf::actor_system_config receiver_cfg;
    caf::actor_system receiver_sys{configure(receiver_cfg)};
    auto server = stream::spawn_log_server(source_sys, src.get());
    auto echo = source_sys.spawn([]() -> caf::behavior {
      return {[](std::uint64_t x) { return x; }};
    });
    auto port = source_sys.middleman().publish(server, 0, "127.0.0.1");
    auto echo_port = source_sys.middleman().publish(echo, 0, "127.0.0.1");
    if (!port || !echo_port)
      die("publish failed");
    auto remote_server = receiver_sys.middleman().remote_actor("127.0.0.1", *port);
    auto remote_echo = receiver_sys.middleman().remote_actor("127.0.0.1", *echo_port);
    if (!remote_server || !remote_echo)
      die("remote_actor failed");

    stream::catch_up_settings cs;
    cs.page_positions = s.page;
    cs.window = s.window;
    round_trip_us(receiver_sys, *remote_echo, 200); // warm up the connection
    for (int round = 0; round < s.rounds; ++round) {
      direct.add(copy_directly(*src, run_dir, s.page, end));
      pipelined.add(copy_pipelined(*src, run_dir, s.page, end));
      local.add(copy_with_catch_up(source_sys, server, run_dir, cs, end));
      remote.add(copy_with_catch_up(receiver_sys, *remote_server, run_dir, cs, end));
      rtt.add(round_trip_us(receiver_sys, *remote_echo, 1000));
    }
    *remote_server = caf::actor{};
    *remote_echo = caf::actor{};
    caf::anon_send_exit(server, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
  }

  const double n = static_cast<double>(end);
  auto rate = [n](double ms) { return ms > 0 ? 1000.0 * n / ms : 0.0; };
  std::printf("(a)  no actors, read + import per page : median %7.1f ms  min %7.1f ms  (%8.0f events/s)\n",
              direct.median(), direct.min(), rate(direct.median()));
  std::printf("(a2) no actors, imports all queued     : median %7.1f ms  min %7.1f ms  (%8.0f events/s)\n",
              pipelined.median(), pipelined.min(), rate(pipelined.median()));
  std::printf("(b)  catch-up, one actor system        : median %7.1f ms  min %7.1f ms  (%8.0f events/s)\n",
              local.median(), local.min(), rate(local.median()));
  std::printf("(c)  catch-up, two systems, loopback   : median %7.1f ms  min %7.1f ms  (%8.0f events/s)"
              "  goal <= 1000 ms for 10k\n",
              remote.median(), remote.min(), rate(remote.median()));
  std::printf("(d)  remote round trip, 1 outstanding  : median %7.1f us  (a page at a time would "
              "wait %.0f ms for %llu pages)\n",
              rtt.median(), rtt.median() * std::ceil(n / s.page) / 1000.0,
              static_cast<unsigned long long>((end + s.page - 1) / s.page));
  std::printf("ratios (c)/(a): %.2f  (c)/(a2): %.2f\n",
              direct.median() > 0 ? remote.median() / direct.median() : 0.0,
              pipelined.median() > 0 ? remote.median() / pipelined.median() : 0.0);

  fs::remove_all(run_dir, ec);
  if (created_dir)
    fs::remove(s.dir, ec); // only if empty
  return 0;
}

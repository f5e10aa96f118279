// Preallocation of the journal's log file: zeros ahead of LMDB's used end, written beside the
// commits, never over committed data, and out of the way when the disk refuses them.

#include "runtime/persistence/file_preallocator.hpp"
#include "test_support.hpp"
#include "tests/support/wait.hpp"

using namespace kontor;
using namespace kontor::persistence;
using namespace kontor::persistence::test;
using namespace std::chrono_literals;

namespace {

std::uint64_t size_of(const std::filesystem::path& p) {
  std::error_code ec;
  auto n = std::filesystem::file_size(p, ec);
  return ec ? 0 : n;
}

/// Polls `pred` until it holds (true) or 20 s pass (false).
template <class Pred>
bool eventually(Pred pred) {
  return kontor::test::wait_until(pred, 20s);
}

/// A file of `pages` 4 KiB pages of 'x', standing in for an owner's data.
void write_pages(const std::filesystem::path& p, std::size_t pages) {
  std::ofstream out{p, std::ios::binary | std::ios::trunc};
  std::string page(4096, 'x');
  for (std::size_t i = 0; i < pages; ++i)
    out << page;
  REQUIRE(out.good());
}

/// Journal options with `bytes` preallocated, and an indexer (which tops the file up) that
/// wakes as soon as there is something to index.
lmdb_options preallocating(const std::filesystem::path& dir, std::uint64_t bytes) {
  auto opts = options(dir);
  opts.preallocate = bytes;
  opts.index_interval = 0ms;
  return opts;
}

} // namespace

TEST_CASE("the preallocator keeps zeros ahead of the used end and leaves the data alone",
          "[journal][preallocate]") {
  temp_dir dir;
  auto file = dir.path() / "data";
  write_pages(file, 4); // 16 KiB used
  std::string why;
  auto p = file_preallocator::open(file, 1 << 20, why);
  INFO(why); // /tmp must support O_DIRECT (ext4 and xfs do; tmpfs does not)
  REQUIRE(p);
  CHECK(p->size() == 16384);
  // The owner writing up to 16 KiB more would pass the end: it must hold the guard.
  CHECK(p->guard(16384, 4096).owns_lock());

  CHECK(p->top_up(16384, 64 << 20).empty());
  CHECK(size_of(file) == 16384 + (1 << 20));
  CHECK(p->size() == size_of(file));
  // Inside the zeros now: no guard needed.
  CHECK_FALSE(p->guard(16384, 4096).owns_lock());
  CHECK(p->guard(16384, 2 << 20).owns_lock());

  // Above half the headroom left, nothing more is written; below it, topped up again.
  CHECK(p->top_up(16384 + 256 * 1024, 64 << 20).empty());
  CHECK(size_of(file) == 16384 + (1 << 20));
  CHECK(p->top_up(16384 + 768 * 1024, 64 << 20).empty());
  CHECK(size_of(file) == 16384 + 768 * 1024 + (1 << 20));

  std::ifstream in{file, std::ios::binary};
  std::string head(16384, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  CHECK(head == std::string(16384, 'x'));
  std::string tail(4096, 'y');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  CHECK(tail == std::string(4096, '\0'));
}

TEST_CASE("a refused preallocation stops at the limit and reports why", "[journal][preallocate]") {
  temp_dir dir;
  auto file = dir.path() / "data";
  write_pages(file, 4);
  std::string why;
  auto p = file_preallocator::open(file, 8 << 20, why);
  INFO(why); // /tmp must support O_DIRECT (ext4 and xfs do; tmpfs does not)
  REQUIRE(p);
  std::string refused;
  {
    file_size_cap cap{1 << 20};
    refused = p->top_up(16384, 64 << 20);
  }
  INFO(refused);
  CHECK(refused.find("writing zeros") != std::string::npos);
  CHECK(size_of(file) <= (1u << 20));
  // Paused after a refusal: the next call does nothing, even with space back.
  CHECK(p->top_up(16384, 64 << 20).empty());
  CHECK(size_of(file) <= (1u << 20));
}

TEST_CASE("a journal with preallocation grows its file ahead and reopens with every event",
          "[journal][preallocate]") {
  temp_dir dir;
  auto opts = preallocating(dir.path(), 4 << 20);
  auto data = dir.path() / "data.mdb";
  {
    auto j = open_ok(opts);
    std::vector<append_request> reqs;
    for (int i = 0; i < 200; ++i)
      reqs.push_back(make_append(0, "p" + std::to_string(i % 10), static_cast<sequence_nr>(i / 10 + 1),
                                 {std::string(300, static_cast<char>('a' + i % 26))}));
    for (auto& r : append_all(*j, std::move(reqs)))
      REQUIRE(r);
    // The indexer tops the file up once it has indexed work; the zeros are past the data.
    REQUIRE(eventually([&] { return size_of(data) >= (4u << 20); }));
    std::vector<append_request> more;
    for (int i = 0; i < 10; ++i)
      more.push_back(make_append(0, "p" + std::to_string(i), 21, {"after"}));
    for (auto& r : append_all(*j, std::move(more)))
      REQUIRE(r);
  }
  auto j = open_ok(opts);
  auto log = whole_log(*j);
  REQUIRE(log.size() == 210);
  CHECK(log[0].payload == std::string(300, 'a'));
  CHECK(log[209].payload == "after");
  auto events = j->replay("p3", 1, 100);
  REQUIRE(events);
  CHECK(events->size() == 21);
  CHECK(j->highest_sequence_nr("p9").value() == 21);
}

TEST_CASE("with preallocation refused, the journal's commits extend the file as before",
          "[journal][preallocate]") {
  temp_dir dir;
  auto opts = preallocating(dir.path(), 1 << 20);
  auto data = dir.path() / "data.mdb";
  auto j = open_ok(opts);
  REQUIRE(append_within(*j, make_append(0, "a", 1, {"first"})));
  // The indexer has put the zeros in place (first wake after the append).
  REQUIRE(eventually([&] { return size_of(data) >= (1u << 20); }));
  sequence_nr seq = 1;
  std::size_t refused = 0;
  const auto cap_at = size_of(data) + 256 * 1024;
  {
    // Commits first use the zeros; the next top-up is refused at the cap; then commits extend
    // the file themselves until it is full.
    file_size_cap cap{cap_at};
    for (int i = 0; i < 1000 && refused == 0; ++i) {
      if (append_within(*j, make_append(0, "a", seq + 1, {std::string(8000, 'p')})))
        ++seq;
      else
        ++refused;
    }
    REQUIRE(cap.lift());
  }
  CHECK(refused == 1); // that append failed and wrote nothing
  CHECK(size_of(data) <= cap_at);
  CHECK(seq > 100); // the zeros and the space up to the cap were used
  // Space is back: appends go on from the last acknowledged one, and everything reads back.
  REQUIRE(append_within(*j, make_append(0, "a", seq + 1, {"after"})));
  auto events = j->replay("a", 1, 2000);
  REQUIRE(events);
  REQUIRE(events->size() == seq + 1);
  CHECK(events->front().payload == "first");
  CHECK(events->back().payload == "after");
  std::size_t intact = 0;
  for (std::size_t i = 1; i + 1 < events->size(); ++i)
    intact += (*events)[i].payload == std::string(8000, 'p') ? 1 : 0;
  CHECK(intact == seq - 1); // no zeros landed on data
}

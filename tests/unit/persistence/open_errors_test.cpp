// Opening a data directory that is not a usable Kontor journal fails with a clear error that
// names the directory; it never crashes.

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_support.hpp"

using namespace kontor::persistence;
using namespace kontor::persistence::test;

namespace {

/// Opens a journal that is expected to fail and returns its error.
error open_error(const lmdb_options& opts) {
  auto j = open_lmdb_journal(opts);
  REQUIRE_FALSE(j.has_value());
  INFO(to_string(j.error().code) << ": " << j.error().message);
  CHECK_THAT(j.error().message, Catch::Contains(opts.dir.string()));
  return j.error();
}

} // namespace

TEST_CASE("a garbage data file is reported as corrupt", "[persistence][open]") {
  temp_dir tmp;
  SECTION("in a fresh directory") {
    std::filesystem::create_directories(tmp.journal_dir());
  }
  SECTION("over a journal that existed") {
    auto j = open_ok(options(tmp.journal_dir()));
    REQUIRE(append_within(*j, make_append(0, "acc", 1, {"e"})).has_value());
  }
  write_garbage(tmp.journal_dir() / "data.mdb", 64 * 1024);
  CHECK(open_error(options(tmp.journal_dir())).code == errc::corrupt);
}

TEST_CASE("a journal format from the future is refused", "[persistence][open]") {
  temp_dir tmp;
  open_ok(options(tmp.journal_dir())).reset();
  raw_put(tmp.journal_dir(), "meta", "format", "kontor-journal/99");
  auto err = open_error(options(tmp.journal_dir()));
  CHECK(err.code == errc::unknown_format);
  CHECK_THAT(err.message, Catch::Contains("kontor-journal/99"));
  CHECK_THAT(err.message, Catch::Contains("kontor-journal/3"));
}

TEST_CASE("journals of earlier formats are refused", "[persistence][open]") {
  // 1: the index inside the log environment; 2: records without shard positions.
  for (const char* old : {"kontor-journal/1", "kontor-journal/2"}) {
    temp_dir tmp;
    std::filesystem::create_directories(tmp.journal_dir());
    raw_put(tmp.journal_dir(), "meta", "format", old);
    auto err = open_error(options(tmp.journal_dir()));
    CHECK(err.code == errc::unknown_format);
    CHECK_THAT(err.message, Catch::Contains(old));
    CHECK_THAT(err.message, Catch::Contains("kontor-journal/3"));
  }
}

TEST_CASE("an LMDB environment that is not a journal is refused", "[persistence][open]") {
  temp_dir tmp;
  std::filesystem::create_directories(tmp.journal_dir());
  raw_put(tmp.journal_dir(), "", "someone-else", "data");
  auto err = open_error(options(tmp.journal_dir()));
  CHECK(err.code == errc::unknown_format);
  CHECK_THAT(err.message, Catch::Contains("<none>"));
}

TEST_CASE("a different shard count is a config mismatch", "[persistence][open]") {
  temp_dir tmp;
  open_ok(options(tmp.journal_dir(), 8)).reset();
  auto err = open_error(options(tmp.journal_dir(), 16));
  CHECK(err.code == errc::config_mismatch);
  CHECK_THAT(err.message, Catch::Contains("8") && Catch::Contains("16"));
  // The right count still opens it.
  CHECK(open_ok(options(tmp.journal_dir(), 8))->number_of_shards() == 8);
}

TEST_CASE("a data dir that cannot be created is an io_error", "[persistence][open]") {
  // Tests run as root, so permissions would not stop them: a regular file as parent does.
  temp_dir tmp;
  const auto file = tmp.path() / "not-a-dir";
  std::ofstream{file} << "x";
  CHECK(open_error(options(file / "journal")).code == errc::io_error);
  CHECK(open_error(options(file)).code == errc::io_error);
}

TEST_CASE("bad options and a second open of the same dir are refused", "[persistence][open]") {
  temp_dir tmp;
  CHECK(open_error(options(tmp.journal_dir(), 0)).code == errc::invalid_argument);
  auto opts = options(tmp.journal_dir());
  opts.max_batch_appends = 0;
  CHECK(open_error(opts).code == errc::invalid_argument);
  opts = options(tmp.journal_dir());
  opts.index_interval = std::chrono::milliseconds{-1};
  CHECK(open_error(opts).code == errc::invalid_argument);
  opts.index_interval = std::chrono::hours{25};
  CHECK(open_error(opts).code == errc::invalid_argument);

  auto j = open_ok(options(tmp.journal_dir()));
  CHECK(open_error(options(tmp.journal_dir())).code == errc::invalid_argument);
  CHECK(open_error(options(tmp.journal_dir() / "." / "")).code == errc::invalid_argument);
  j.reset();
  CHECK(open_ok(options(tmp.journal_dir())) != nullptr);
}

// Opening a data directory that is not a usable Kontor journal fails with a clear error that
// names the directory; it never crashes.

#include <lmdb.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "test_support.hpp"

using namespace kontor::persistence;
using namespace kontor::persistence::test;

namespace {

/// Puts `key` = `value` into the named database `db` (or the main database when empty) of the
/// LMDB environment in `dir`, bypassing the journal.
void raw_put(const std::filesystem::path& dir, const std::string& db, const std::string& key,
             const std::string& value) {
  MDB_env* env = nullptr;
  REQUIRE(mdb_env_create(&env) == MDB_SUCCESS);
  REQUIRE(mdb_env_set_maxdbs(env, 128) == MDB_SUCCESS);
  REQUIRE(mdb_env_open(env, dir.c_str(), MDB_NOTLS, 0644) == MDB_SUCCESS);
  MDB_txn* txn = nullptr;
  REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == MDB_SUCCESS);
  MDB_dbi dbi = 0;
  REQUIRE(mdb_dbi_open(txn, db.empty() ? nullptr : db.c_str(), MDB_CREATE, &dbi) == MDB_SUCCESS);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == MDB_SUCCESS);
  REQUIRE(mdb_txn_commit(txn) == MDB_SUCCESS);
  mdb_env_close(env);
}

/// Overwrites `file` with `size` pseudo-random bytes (fixed seed: the same bytes every run).
void write_garbage(const std::filesystem::path& file, std::size_t size) {
  std::mt19937_64 rng{20240611};
  std::ofstream out{file, std::ios::binary | std::ios::trunc};
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t word = rng();
    out.write(reinterpret_cast<const char*>(&word), 8);
  }
  REQUIRE(out.good());
}

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
    REQUIRE(j->append(make_append(0, "acc", 1, {"e"})).has_value());
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
  CHECK_THAT(err.message, Catch::Contains("kontor-journal/1"));
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

  auto j = open_ok(options(tmp.journal_dir()));
  CHECK(open_error(options(tmp.journal_dir())).code == errc::invalid_argument);
  CHECK(open_error(options(tmp.journal_dir() / "." / "")).code == errc::invalid_argument);
  j.reset();
  CHECK(open_ok(options(tmp.journal_dir())) != nullptr);
}

#include "runtime/persistence/lmdb_env.hpp"

#include <limits>
#include <set>

#include "runtime/persistence/lmdb_error.hpp"

namespace kontor::persistence::detail {

namespace {

constexpr unsigned int max_readers = 512;
constexpr mdb_mode_t file_mode = 0644;

std::mutex& claims_mutex() {
  static std::mutex m;
  return m;
}

std::set<std::string>& claims() {
  static std::set<std::string> s;
  return s;
}

} // namespace

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64))
    out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (s.size() > 64)
    out += "...";
  return out;
}

expected<env_ptr> open_env(const std::filesystem::path& dir, unsigned int max_dbs,
                           std::size_t map_size, unsigned int flags) {
  MDB_env* raw_env = nullptr;
  if (int rc = mdb_env_create(&raw_env))
    return lmdb_error(rc, "mdb_env_create", dir);
  env_ptr env{raw_env};
  if (int rc = mdb_env_set_maxdbs(env.get(), max_dbs))
    return lmdb_error(rc, "mdb_env_set_maxdbs", dir);
  if (int rc = mdb_env_set_maxreaders(env.get(), max_readers))
    return lmdb_error(rc, "mdb_env_set_maxreaders", dir);
  if (map_size != 0)
    if (int rc = mdb_env_set_mapsize(env.get(), map_size))
      return lmdb_error(rc, "mdb_env_set_mapsize", dir);
  if (int rc = mdb_env_open(env.get(), dir.c_str(), flags, file_mode))
    return lmdb_error(rc, "mdb_env_open", dir);
  int dead_readers = 0;
  if (int rc = mdb_reader_check(env.get(), &dead_readers))
    return lmdb_error(rc, "mdb_reader_check", dir);
  return env;
}

expected<bool> env_is_empty(MDB_txn* txn, const std::filesystem::path& dir) {
  MDB_dbi main_db = 0;
  MDB_stat st;
  if (int rc = mdb_dbi_open(txn, nullptr, 0, &main_db))
    return lmdb_error(rc, "mdb_dbi_open(main)", dir);
  if (int rc = mdb_stat(txn, main_db, &st))
    return lmdb_error(rc, "mdb_stat(main)", dir);
  return st.ms_entries == 0;
}

int find_last_u64(MDB_cursor* cursor, std::uint64_t& out) noexcept {
  out = 0;
  MDB_val k, v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
  if (rc == MDB_NOTFOUND)
    return MDB_SUCCESS;
  if (rc != MDB_SUCCESS)
    return rc;
  if (k.mv_size != 8)
    return MDB_CORRUPTED;
  out = load_be(static_cast<const char*>(k.mv_data), 8);
  return MDB_SUCCESS;
}

env_state::env_state(std::filesystem::path dir, env_ptr env)
  : dir_(std::move(dir)), env_(env.release()) {
  MDB_envinfo info;
  map_size_ = mdb_env_info(env_, &info) == MDB_SUCCESS ? info.me_mapsize : 0;
}

env_state::~env_state() {
  mdb_env_close(env_);
}

bool env_state::grow_map(std::string& failure) {
  if (map_size_ == 0 || map_size_ > std::numeric_limits<std::size_t>::max() / 2) {
    failure = "growing the map of " + dir_.string() + " beyond " + std::to_string(map_size_)
              + " bytes";
    return false;
  }
  const std::size_t next = map_size_ * 2;
  resize_pending_.store(true);
  int rc = MDB_SUCCESS;
  {
    std::unique_lock lock{map_mutex_};
    rc = mdb_env_set_mapsize(env_, next);
    if (rc != MDB_SUCCESS) {
      // LMDB unmapped the old map before failing to map the new one: the env is unusable.
      broken_.store(true);
    } else {
      MDB_envinfo info;
      map_size_ = mdb_env_info(env_, &info) == MDB_SUCCESS ? info.me_mapsize : next;
    }
  }
  resize_pending_.store(false);
  resize_pending_.notify_all();
  if (rc != MDB_SUCCESS) {
    failure = "mdb_env_set_mapsize(" + std::to_string(next) + ") of " + dir_.string() + " ["
              + std::to_string(rc) + "]";
    return false;
  }
  return true;
}

error env_state::broken_error() const {
  return make_error(errc::io_error, "journal environment " + dir_.string()
                                      + " is unusable after a failed map resize; reopen it");
}

error env_state::failure(int rc, std::string_view operation) const {
  return lmdb_error(rc, operation, dir_);
}

std::optional<error> begin_read(const env_state& e, read_txn& txn, std::string_view caller) {
  if (e.broken())
    return e.broken_error();
  if (int rc = txn.begin())
    return e.failure(rc, "mdb_txn_begin(" + std::string(caller) + ")");
  return std::nullopt;
}

std::optional<error> open_read_cursor(const env_state& e, read_txn& txn, read_cursor& cursor,
                                      MDB_dbi dbi, std::string_view caller) {
  if (auto err = begin_read(e, txn, caller))
    return err;
  if (int rc = cursor.open(txn.get(), dbi))
    return e.failure(rc, "mdb_cursor_open(" + std::string(caller) + ")");
  return std::nullopt;
}

dir_claim::~dir_claim() {
  if (!key_.empty()) {
    std::lock_guard lock{claims_mutex()};
    claims().erase(key_);
  }
}

bool dir_claim::claim(std::string key) {
  std::lock_guard lock{claims_mutex()};
  if (!claims().insert(key).second)
    return false;
  key_ = std::move(key);
  return true;
}

} // namespace kontor::persistence::detail

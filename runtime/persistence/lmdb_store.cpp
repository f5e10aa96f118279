#include "runtime/persistence/lmdb_store.hpp"

#include <lmdb.h>

#include <mutex>
#include <shared_mutex>
#include <system_error>

#include "runtime/persistence/lmdb_error.hpp"

namespace kontor::persistence {

namespace {

MDB_val to_val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view to_view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

/// Reads (and, for a write transaction, writes) inside one LMDB transaction.
class txn_access final : public store_writer {
public:
  txn_access(MDB_txn* txn, const std::vector<MDB_dbi>& dbis) : txn_(txn), dbis_(dbis) {}

  std::optional<std::string_view> get(table_id table, std::string_view key) const override {
    auto k = to_val(key);
    MDB_val v;
    int rc = mdb_get(txn_, dbis_.at(table), &k, &v);
    if (rc == MDB_NOTFOUND)
      return std::nullopt;
    if (rc != 0) {
      note(rc, "mdb_get");
      return std::nullopt;
    }
    return to_view(v);
  }

  void scan(table_id table, std::string_view from,
            const std::function<bool(std::string_view, std::string_view)>& fn) const override {
    MDB_cursor* cur = nullptr;
    if (int rc = mdb_cursor_open(txn_, dbis_.at(table), &cur); rc != 0)
      return note(rc, "mdb_cursor_open");
    auto k = to_val(from);
    MDB_val v;
    int rc = from.empty() ? mdb_cursor_get(cur, &k, &v, MDB_FIRST)
                          : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && fn(to_view(k), to_view(v)))
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    if (rc != 0 && rc != MDB_NOTFOUND)
      note(rc, "mdb_cursor_get");
    mdb_cursor_close(cur);
  }

  void put(table_id table, std::string_view key, std::string_view value) override {
    write(table, key, value, 0);
  }

  void append(table_id table, std::string_view key, std::string_view value) override {
    write(table, key, value, MDB_APPEND);
  }

  void erase(table_id table, std::string_view key) override {
    if (rc_)
      return;
    auto k = to_val(key);
    int rc = mdb_del(txn_, dbis_.at(table), &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND)
      note(rc, "mdb_del");
  }

  /// The first failure (0: none) and the operation that failed.
  int rc() const noexcept { return rc_; }
  const char* operation() const noexcept { return op_; }

private:
  void write(table_id table, std::string_view key, std::string_view value, unsigned flags) {
    if (rc_)
      return;
    auto k = to_val(key);
    auto v = to_val(value);
    if (int rc = mdb_put(txn_, dbis_.at(table), &k, &v, flags); rc != 0)
      note(rc, "mdb_put");
  }

  void note(int rc, const char* op) const {
    if (!rc_) {
      rc_ = rc;
      op_ = op;
    }
  }

  MDB_txn* txn_;
  const std::vector<MDB_dbi>& dbis_;
  mutable int rc_ = 0;
  mutable const char* op_ = "";
};

} // namespace

struct lmdb_store::impl {
  store_options opts;
  MDB_env* env = nullptr;
  std::vector<MDB_dbi> dbis;
  std::size_t map_size = 0;
  /// Readers hold it shared for the length of their transaction; growing the map holds it
  /// exclusively (mdb_env_set_mapsize must not run while a transaction is open).
  mutable std::shared_mutex map_mutex;
  std::mutex write_mutex; ///< one write transaction at a time

  ~impl() {
    if (env)
      mdb_env_close(env);
  }

  error fail(int rc, std::string_view op) const { return detail::lmdb_error(rc, op, opts.dir); }

  /// One attempt of a write; returns the LMDB code (MDB_MAP_FULL: grow and retry).
  int try_write(const std::function<void(store_writer&)>& fn, const char*& op) {
    std::shared_lock<std::shared_mutex> guard{map_mutex};
    MDB_txn* txn = nullptr;
    op = "mdb_txn_begin";
    if (int rc = mdb_txn_begin(env, nullptr, 0, &txn); rc != 0)
      return rc;
    txn_access access{txn, dbis};
    fn(access);
    if (access.rc() != 0) {
      op = access.operation();
      mdb_txn_abort(txn);
      return access.rc();
    }
    op = "mdb_txn_commit";
    return mdb_txn_commit(txn);
  }
};

lmdb_store::lmdb_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

lmdb_store::~lmdb_store() = default;

const std::filesystem::path& lmdb_store::dir() const noexcept {
  return impl_->opts.dir;
}

expected<std::unique_ptr<lmdb_store>> lmdb_store::open(store_options opts) {
  auto p = std::make_unique<impl>();
  p->opts = std::move(opts);
  const auto& dir = p->opts.dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return detail::fs_error(ec, "create_directories", dir);
  if (int rc = mdb_env_create(&p->env); rc != 0)
    return p->fail(rc, "mdb_env_create");
  p->map_size = p->opts.initial_map_size;
  if (int rc = mdb_env_set_mapsize(p->env, p->map_size); rc != 0)
    return p->fail(rc, "mdb_env_set_mapsize");
  if (int rc = mdb_env_set_maxdbs(p->env, static_cast<MDB_dbi>(p->opts.tables.size() + 1)); rc != 0)
    return p->fail(rc, "mdb_env_set_maxdbs");
  if (int rc = mdb_env_open(p->env, dir.c_str(), MDB_NOTLS | MDB_NOMETASYNC, 0644); rc != 0)
    return p->fail(rc, "mdb_env_open");
  int dead = 0;
  mdb_reader_check(p->env, &dead);
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(p->env, nullptr, 0, &txn); rc != 0)
    return p->fail(rc, "mdb_txn_begin");
  for (const auto& name : p->opts.tables) {
    MDB_dbi dbi = 0;
    if (int rc = mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &dbi); rc != 0) {
      mdb_txn_abort(txn);
      return p->fail(rc, "mdb_dbi_open(" + name + ")");
    }
    p->dbis.push_back(dbi);
  }
  if (int rc = mdb_txn_commit(txn); rc != 0)
    return p->fail(rc, "mdb_txn_commit");
  return std::unique_ptr<lmdb_store>(new lmdb_store(std::move(p)));
}

expected<void> lmdb_store::write(const std::function<void(store_writer&)>& fn) {
  auto& p = *impl_;
  std::lock_guard<std::mutex> one_writer{p.write_mutex};
  for (;;) {
    const char* op = "";
    int rc = p.try_write(fn, op);
    if (rc == 0)
      return {};
    if (rc != MDB_MAP_FULL)
      return p.fail(rc, op);
    std::unique_lock<std::shared_mutex> resize{p.map_mutex};
    auto next = p.map_size * 2;
    if (int grow = mdb_env_set_mapsize(p.env, next); grow != 0)
      return p.fail(grow, "mdb_env_set_mapsize");
    p.map_size = next;
  }
}

expected<void> lmdb_store::read(const std::function<void(const store_reader&)>& fn) const {
  auto& p = *impl_;
  std::shared_lock<std::shared_mutex> guard{p.map_mutex};
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(p.env, nullptr, MDB_RDONLY, &txn); rc != 0)
    return p.fail(rc, "mdb_txn_begin(read)");
  txn_access access{txn, p.dbis};
  fn(access);
  mdb_txn_abort(txn);
  if (access.rc() != 0)
    return p.fail(access.rc(), access.operation());
  return {};
}

expected<void> lmdb_store::clear() {
  auto& p = *impl_;
  std::lock_guard<std::mutex> one_writer{p.write_mutex};
  std::shared_lock<std::shared_mutex> guard{p.map_mutex};
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(p.env, nullptr, 0, &txn); rc != 0)
    return p.fail(rc, "mdb_txn_begin(clear)");
  for (auto dbi : p.dbis) {
    if (int rc = mdb_drop(txn, dbi, 0); rc != 0) {
      mdb_txn_abort(txn);
      return p.fail(rc, "mdb_drop");
    }
  }
  if (int rc = mdb_txn_commit(txn); rc != 0)
    return p.fail(rc, "mdb_txn_commit(clear)");
  return {};
}

} // namespace kontor::persistence

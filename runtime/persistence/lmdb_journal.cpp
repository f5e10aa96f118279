#include "runtime/persistence/lmdb_journal.hpp"

#include <algorithm>
#include <limits>
#include <system_error>

#include "runtime/core/log.hpp"
#include "runtime/persistence/journal_index.hpp"
#include "runtime/persistence/journal_indexer.hpp"
#include "runtime/persistence/journal_log.hpp"
#include "runtime/persistence/journal_tail.hpp"
#include "runtime/persistence/journal_writer.hpp"
#include "runtime/persistence/lmdb_error.hpp"
#include "runtime/persistence/log_record.hpp"

// The LMDB journal, in parts (each its own file):
//   journal_log      the log environment <dir>/: records, snapshots; the truth (journal_log.hpp)
//   journal_index    the derived index environment <dir>/index/: by id and by shard
//   journal_tail     committed events the index does not hold yet, in memory
//   journal_writer   the writer thread: group commits of appends, snapshots and imports
//   journal_indexer  the indexer thread: folds the log into the index, trims the tail
// This file opens them in order and answers reads: by id and by shard through tail + index
// (the tail first: an entry the indexer trims meanwhile is already in the index), the log by
// offset directly.

namespace kontor::persistence {

namespace {

namespace fs = std::filesystem;
using namespace detail;

constexpr const char* index_dir_name = "index";
constexpr const char* log_component = "journal";
constexpr std::uint32_t max_shards = 4096;
/// The longest index interval accepted (longer ones would overflow the indexer's clock math).
constexpr std::chrono::hours max_index_interval{24};
/// Entries fetched at a time to finish an append that a page would otherwise split.
constexpr std::size_t append_rest_chunk = 64;

/// Merges a stream's index entries with its tail entries (both ordered by key) into at most
/// `max` entries; an entry in both (indexed while we read) is the same log entry.
std::vector<tail_entry> merge(const std::vector<tail_entry>& indexed,
                              const std::vector<tail_entry>& recent, std::size_t max) {
  std::vector<tail_entry> refs;
  refs.reserve(std::min(max, indexed.size() + recent.size()));
  for (std::size_t i = 0, t = 0; refs.size() < max && (i < indexed.size() || t < recent.size());) {
    if (t == recent.size() || (i < indexed.size() && indexed[i].key < recent[t].key)) {
      refs.push_back(indexed[i++]);
    } else {
      if (i < indexed.size() && indexed[i].key == recent[t].key)
        ++i;
      refs.push_back(recent[t++]);
    }
  }
  return refs;
}

} // namespace

/// The LMDB journal: the parts above, wired together.
class lmdb_journal final : public journal {
public:
  /// Opens or creates the journal described by `opts`, brings its index up to the log's end and
  /// starts its writer and indexer threads.
  static expected<std::unique_ptr<journal>> open(lmdb_options opts);

  /// Stops accepting work, commits what is queued, stops the indexer, closes the environments.
  ~lmdb_journal() override;

  void append_async(append_request req, append_callback done) override {
    writer_->append(std::move(req), std::move(done));
  }
  void save_snapshot_async(snapshot snap, std::function<void(expected<void>)> done) override {
    writer_->save_snapshot(std::move(snap), std::move(done));
  }
  void import_async(shard_import batch, import_callback done) override {
    writer_->import(std::move(batch), std::move(done));
  }
  expected<std::vector<stored_event>> replay(const std::string& persistence_id, sequence_nr from,
                                             std::size_t max) const override;
  expected<sequence_nr> highest_sequence_nr(const std::string& persistence_id) const override;
  expected<std::optional<snapshot>> load_snapshot(const std::string& persistence_id) const override;
  expected<log_page> read_log(log_offset from, std::size_t max) const override {
    return log_->scan(from, max);
  }
  expected<shard_page> read_shard_log(shard_id shard, shard_offset from,
                                      std::size_t max) const override;
  expected<shard_offset> shard_end(shard_id shard) const override;
  expected<log_offset> log_end() const override { return log_->end(); }
  std::uint32_t number_of_shards() const noexcept override { return log_->shards(); }

  log_offset index_watermark() const noexcept { return indexer_->watermark(); }
  std::uint64_t index_failures() const noexcept { return indexer_->failures(); }
  /// The log environment's flags (mdb_env_get_flags); nullopt if LMDB cannot tell.
  std::optional<unsigned> log_env_flags() const noexcept {
    unsigned flags = 0;
    if (mdb_env_get_flags(log_->env().get(), &flags) != MDB_SUCCESS)
      return std::nullopt;
    return flags;
  }

private:
  lmdb_journal(dir_claim claim, std::unique_ptr<journal_log> log,
               std::unique_ptr<journal_index> index)
    : claim_(std::move(claim)),
      log_(std::move(log)),
      index_(std::move(index)),
      tail_(log_->opened_end()) {}

  /// The refs of `shard` from position `from` on: at most `max`, tail first then index.
  expected<std::vector<tail_entry>> shard_refs(shard_id shard, shard_offset from,
                                               std::size_t max) const;
  error invalid_id(std::string_view caller, const std::string& id) const {
    return make_error(errc::invalid_argument, std::string{caller} + " in "
                                                + log_->env().dir().string()
                                                + ": persistence id must be 1..255 bytes, is "
                                                + std::to_string(id.size()));
  }

  // Declaration order is construction order; destruction runs backwards: threads first.
  dir_claim claim_;
  std::unique_ptr<journal_log> log_;
  std::unique_ptr<journal_index> index_;
  journal_tail tail_;
  log_file_space space_;
  std::unique_ptr<journal_indexer> indexer_;
  std::unique_ptr<journal_writer> writer_;
};

expected<std::unique_ptr<journal>> lmdb_journal::open(lmdb_options opts) {
  const fs::path& dir = opts.dir;
  if (dir.empty())
    return make_error(errc::invalid_argument, "open_lmdb_journal: no data dir given");
  if (opts.number_of_shards == 0 || opts.number_of_shards > max_shards)
    return make_error(errc::invalid_argument,
                      "data dir " + dir.string() + ": number_of_shards must be 1.."
                        + std::to_string(max_shards) + ", is "
                        + std::to_string(opts.number_of_shards));
  if (opts.max_batch_appends == 0)
    return make_error(errc::invalid_argument,
                      "data dir " + dir.string() + ": max_batch_appends must be at least 1");
  if (opts.index_interval < std::chrono::milliseconds{0} || opts.index_interval > max_index_interval)
    return make_error(errc::invalid_argument,
                      "data dir " + dir.string() + ": index_interval must be 0..24 h, is "
                        + std::to_string(opts.index_interval.count()) + " ms");

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return fs_error(ec, "creating data dir", dir);
  if (!fs::is_directory(dir, ec))
    return fs_error(ec ? ec : std::make_error_code(std::errc::not_a_directory), "opening data dir",
                    dir);
  auto canonical = fs::canonical(dir, ec);
  if (ec)
    return fs_error(ec, "resolving data dir", dir);
  dir_claim claim;
  if (!claim.claim(canonical.string()))
    return make_error(errc::invalid_argument,
                      "data dir " + dir.string() + " is already open in this process");

  auto log = journal_log::open(opts);
  if (!log)
    return std::move(log).error();
  const log_offset end = (*log)->opened_end();

  // The index is derived data: one that cannot be used is deleted and rebuilt from the log.
  const fs::path index_dir = dir / index_dir_name;
  const bool index_existed = fs::exists(index_dir, ec);
  bool rebuilding = false;
  auto index = journal_index::open(index_dir, opts.initial_map_size, end);
  if (!index) {
    kontor::log(log_level::warn, log_component,
                "journal index: cannot use it (" + index.error().message
                  + "); deleting it and rebuilding it from the log");
    fs::remove_all(index_dir, ec);
    if (ec)
      return fs_error(ec, "deleting the unusable index dir", index_dir);
    index = journal_index::open(index_dir, opts.initial_map_size, end);
    if (!index)
      return std::move(index).error();
    rebuilding = true;
  } else if (!index_existed && end > 0) {
    kontor::log(log_level::warn, log_component,
                "journal index: " + index_dir.string() + " is missing; rebuilding it from the log");
    rebuilding = true;
  }

  std::unique_ptr<lmdb_journal> j{
    new lmdb_journal(std::move(claim), std::move(*log), std::move(*index))};
  j->indexer_ = std::make_unique<journal_indexer>(*j->log_, *j->index_, j->tail_,
                                                  opts.index_interval, j->space_);
  // Everything committed before this open is indexed now, so the tail starts empty.
  if (auto caught_up = j->indexer_->catch_up(end, rebuilding); !caught_up)
    return std::move(caught_up).error();
  auto shard_ends = j->index_->shard_ends(opts.number_of_shards);
  if (!shard_ends)
    return std::move(shard_ends).error();
  if (opts.preallocate > 0) {
    std::string why_not;
    MDB_stat st;
    if (int rc = mdb_env_stat(j->log_->env().get(), &st))
      why_not = mdb_strerror(rc);
    else
      j->space_.prealloc = file_preallocator::open(dir / "data.mdb", opts.preallocate, why_not);
    if (j->space_.prealloc) {
      j->space_.page_size = st.ms_psize;
      j->space_.used_end = j->space_.used(j->log_->env().get());
    } else {
      kontor::log(log_level::info, log_component,
                  "journal: no preallocation of the log file (" + why_not + ")");
    }
  }
  j->writer_ = std::make_unique<journal_writer>(*j->log_, *j->index_, j->tail_,
                                                std::move(*shard_ends), opts.max_batch_appends,
                                                opts.on_commit, j->space_);
  try {
    j->indexer_->start();
    j->writer_->start();
  } catch (const std::system_error& e) {
    return make_error(errc::io_error,
                      "data dir " + dir.string() + ": cannot start the journal's threads: "
                        + e.what());
  }
  return std::unique_ptr<journal>{std::move(j)};
}

lmdb_journal::~lmdb_journal() {
  // The writer drains first: what it committed is in the log; what the indexer has not reached
  // is indexed at the next open.
  if (writer_)
    writer_->stop();
  if (indexer_)
    indexer_->stop();
}

expected<std::vector<stored_event>>
lmdb_journal::replay(const std::string& persistence_id, sequence_nr from, std::size_t max) const {
  if (!valid_id(persistence_id))
    return invalid_id("replay", persistence_id);
  if (max == 0)
    return std::vector<stored_event>{};
  const sequence_nr first = std::max<sequence_nr>(from, 1); // seqs start at 1
  // The tail holds a suffix of the id's stream, so if it starts at `first` the index has
  // nothing before it.
  auto recent = tail_.by_id(persistence_id, first, max);
  std::vector<tail_entry> indexed;
  if (recent.empty() || recent.front().key != first) {
    auto found = index_->by_id(persistence_id, first, max);
    if (!found)
      return std::move(found).error();
    indexed = std::move(*found);
  }
  return log_->fetch(merge(indexed, recent, max), ref_kind::by_id, persistence_id, 0);
}

expected<sequence_nr> lmdb_journal::highest_sequence_nr(const std::string& persistence_id) const {
  if (!valid_id(persistence_id))
    return invalid_id("highest_sequence_nr", persistence_id);
  if (auto high = tail_.highest_seq(persistence_id))
    return *high;
  auto highs = index_->highest_seqs({persistence_id});
  if (!highs)
    return std::move(highs).error();
  return highs->front();
}

expected<std::optional<snapshot>>
lmdb_journal::load_snapshot(const std::string& persistence_id) const {
  if (!valid_id(persistence_id))
    return invalid_id("load_snapshot", persistence_id);
  return log_->load_snapshot(persistence_id);
}

expected<std::vector<tail_entry>> lmdb_journal::shard_refs(shard_id shard, shard_offset from,
                                                           std::size_t max) const {
  auto recent = tail_.by_shard(shard, from, max);
  std::vector<tail_entry> indexed;
  if (recent.empty() || recent.front().key != from) {
    auto found = index_->by_shard(shard, from, max);
    if (!found)
      return std::move(found).error();
    indexed = std::move(*found);
  }
  return merge(indexed, recent, max);
}

expected<shard_page> lmdb_journal::read_shard_log(shard_id shard, shard_offset from,
                                                  std::size_t max) const {
  if (shard >= log_->shards())
    return make_error(errc::invalid_argument, "read_shard_log in " + log_->env().dir().string()
                                                + ": shard " + std::to_string(shard)
                                                + " is out of range ("
                                                + std::to_string(log_->shards()) + " shards)");
  shard_page page;
  page.next = std::max<shard_offset>(from, 1); // positions start at 1
  // The end first: every position up to it is then found by the reads below.
  auto end = shard_end(shard);
  if (!end)
    return std::move(end).error();
  page.end = *end;
  if (max == 0 || page.next > page.end)
    return page;
  for (std::size_t want = max; want > 0;) {
    auto refs = shard_refs(shard, page.next, want);
    if (!refs)
      return std::move(refs).error();
    if (refs->empty() || refs->front().key != page.next)
      return log_->corrupt("shard " + std::to_string(shard) + " has no event at position "
                           + std::to_string(page.next) + " below its end "
                           + std::to_string(std::max(page.end, page.next)));
    auto events = log_->fetch(*refs, ref_kind::by_shard, {}, shard);
    if (!events)
      return std::move(events).error();
    // Never end a page inside an append (appends commit whole, so the rest is there); once
    // past `max`, take events only up to the end of the append in progress.
    const bool finishing = !page.events.empty();
    bool whole = false;
    for (auto& ev : *events) {
      whole = ev.append_end;
      page.events.push_back(std::move(ev));
      if (finishing && whole)
        break;
    }
    page.next = page.events.back().shard_pos + 1;
    page.end = std::max(page.end, page.events.back().shard_pos);
    want = whole ? 0 : append_rest_chunk;
  }
  return page;
}

expected<shard_offset> lmdb_journal::shard_end(shard_id shard) const {
  if (shard >= log_->shards())
    return make_error(errc::invalid_argument, "shard_end in " + log_->env().dir().string()
                                                + ": shard " + std::to_string(shard)
                                                + " is out of range");
  if (auto end = tail_.shard_end(shard))
    return *end;
  return index_->shard_end(shard);
}

expected<std::unique_ptr<journal>> open_lmdb_journal(lmdb_options opts) {
  return lmdb_journal::open(std::move(opts));
}

std::optional<log_offset> lmdb_index_watermark(const journal& j) {
  if (const auto* lj = dynamic_cast<const lmdb_journal*>(&j))
    return lj->index_watermark();
  return std::nullopt;
}

std::optional<std::uint64_t> lmdb_index_failures(const journal& j) {
  if (const auto* lj = dynamic_cast<const lmdb_journal*>(&j))
    return lj->index_failures();
  return std::nullopt;
}

std::optional<unsigned> lmdb_log_env_flags(const journal& j) {
  if (const auto* lj = dynamic_cast<const lmdb_journal*>(&j))
    return lj->log_env_flags();
  return std::nullopt;
}

} // namespace kontor::persistence

#pragma once
/// Checkpoints: a param_store saved as a safetensors file, with string metadata (the model's
/// configuration), so a model trained in Unfold loads into PyTorch and back.
///
/// The file format is safetensors: Note [Checkpoint format] in framework/safetensors.hpp.
///
/// Note [Checkpoint loading never trusts the file]
/// A checkpoint may be truncated, corrupt or hostile. Loading reads and checks everything before
/// it touches the model: the length prefix against the file and a 100 MB cap (checked before
/// anything is allocated), the header as strict UTF-8 and JSON without duplicate keys, every
/// entry (an object with exactly dtype, shape and data_offsets; a known dtype; non-negative
/// integer dimensions whose element count matches the byte range, without overflow), the offsets
/// (ordered, inside the data, tiling it with no gap or overlap, ending exactly at the end of the
/// file), the metadata (string to string), then every parameter of the store (present, same
/// shape) and no tensor the store does not have (unless extra_tensors::ignore). Only then are
/// the parameters replaced, all at once, by moves that cannot fail: a failed load leaves every
/// parameter bit-identical. Every error is unfold::error naming the file and what is wrong (the
/// tensor and both shapes where that applies).
///
/// Note [Checkpoint saving never destroys the previous one]
/// Saving writes a temporary file in the target's directory (".<name>.tmp-<pid>-<n>"), fsyncs it,
/// renames it over the target (atomic on POSIX) and fsyncs the directory. On any failure the
/// temporary is removed and unfold::error is thrown, so the previous checkpoint is intact; a
/// process killed mid-save can leave a stray temporary behind, never a half-written target.
/// detail::save_checkpoint_with takes the function that writes the bytes: tests pass one that
/// fails part-way to simulate a full disk.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <unfold/framework/error.hpp>
#include <unfold/framework/param.hpp>
#include <unfold/framework/safetensors.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold
{

/// Every tensor of a checkpoint, converted to unfold::real, with its metadata.
struct checkpoint_contents
{
    checkpoint_metadata metadata;          ///< the file's "__metadata__"
    std::map<std::string, tensor> tensors; ///< every tensor, by name
};

/// What load_checkpoint does with a tensor of the file that the store has no parameter for.
enum class extra_tensors
{
    reject, ///< an error naming the tensor(s) (the default: a wrong model is caught early)
    ignore  ///< skipped, e.g. to load part of a larger model
};

namespace detail
{

/// Writes all `size` bytes to the open file `fd` or throws; the seam for simulated failures.
using checkpoint_writer = std::function<void(int fd, const char* data, std::size_t size)>;

inline void write_fully(int fd, const char* data, std::size_t size)
{
    while (size > 0)
    {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail(fmt::format("write failed: {}", std::strerror(n < 0 ? errno : EIO)));
        data += n;
        size -= std::size_t(n);
    }
}

/// save_checkpoint of named tensors with the byte writer as a parameter (tests simulate failures
/// with it). See Note [Checkpoint saving never destroys the previous one].
inline void save_tensors_with(const std::string& path, const std::vector<named_tensor>& tensors,
                              const checkpoint_metadata& metadata, const checkpoint_writer& write)
{
    namespace fs = std::filesystem;
    const std::string header = encode_header(path, tensors, metadata);

    const fs::path target(path);
    UNFOLD_CHECK(!target.filename().empty(), "checkpoint {}: the path names no file", path);
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    static std::atomic<unsigned> counter{0};
    std::string temp;
    int fd = -1;
    int open_error = 0;
    for (int attempt = 0; attempt < 100 && fd < 0; ++attempt)
    {
        temp = (dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                       "-" + std::to_string(counter++)))
                   .string();
        // 0666 & ~umask: the permissions a plain new file gets (mkstemp would force 0600).
        fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        open_error = errno;
        if (fd < 0 && open_error != EEXIST)
            break;
    }
    UNFOLD_CHECK(fd >= 0, "checkpoint {}: cannot create the temporary file {} ({})", path, temp,
                 std::strerror(open_error));

    try
    {
        write(fd, header.data(), header.size());
        std::vector<char> bytes;
        for (const auto& t : tensors)
        {
            encode(*t.value, bytes);
            write(fd, bytes.data(), bytes.size());
        }
        UNFOLD_CHECK(::fsync(fd) == 0, "fsync failed: {}", std::strerror(errno));
        const int closed = ::close(fd);
        fd = -1;
        UNFOLD_CHECK(closed == 0, "close failed: {}", std::strerror(errno));
        UNFOLD_CHECK(::rename(temp.c_str(), path.c_str()) == 0, "cannot rename {} to it: {}", temp,
                     std::strerror(errno));
    }
    catch (const std::exception& e)
    {
        if (fd >= 0)
            ::close(fd);
        ::unlink(temp.c_str());
        fail(fmt::format("checkpoint {}: saving failed, the previous file is unchanged ({})", path,
                         e.what()));
    }
    // Make the rename itself durable; best effort (some file systems refuse fsync on a directory).
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0)
    {
        ::fsync(dir_fd);
        ::close(dir_fd);
    }
}

/// save_checkpoint with the byte writer as a parameter.
inline void save_checkpoint_with(const std::string& path, const param_store& store,
                                 const checkpoint_metadata& metadata,
                                 const checkpoint_writer& write)
{
    save_tensors_with(path, named_tensors(path, store), metadata, write);
}

} // namespace detail

/// Saves every parameter of `store` (its value, not its gradient) under its name, in the build's
/// precision, with `metadata`, to `path` (conventionally *.safetensors). Replaces an existing file
/// atomically: on failure it throws unfold::error and the previous file is unchanged. See
/// Note [Checkpoint format] and Note [Checkpoint saving never destroys the previous one].
inline void save_checkpoint(const std::string& path, const param_store& store,
                            const checkpoint_metadata& metadata = {})
{
    detail::save_checkpoint_with(path, store, metadata, detail::write_fully);
}

/// Loads `path` into `store`: every parameter must have a tensor of its name and shape (F32 or
/// F64, converted). A tensor the store lacks is an error unless `extra` is ignore. All or
/// nothing: on any error (unfold::error naming the file, the tensor and the shapes) no parameter
/// changes. Gradients are left as they are. Returns the file's metadata. See
/// Note [Checkpoint loading never trusts the file].
inline checkpoint_metadata load_checkpoint(const std::string& path, param_store& store,
                                           extra_tensors extra = extra_tensors::reject);

/// True when `metadata` is a training checkpoint's (Note [Training checkpoints] in
/// framework/training_checkpoint.hpp).
inline bool is_training_checkpoint(const checkpoint_metadata& metadata)
{
    const auto found = metadata.find("unfold.training");
    return found != metadata.end() && found->second == "1";
}

namespace detail
{
inline const std::string optimizer_prefix = "optimizer/";
inline const std::string run_prefix = "run/";

/// True for a tensor that holds a training checkpoint's optimiser or run state rather than a
/// parameter (Note [Training checkpoints]).
inline bool is_training_state_tensor(const std::string& name)
{
    return name.rfind(optimizer_prefix, 0) == 0 || name.rfind(run_prefix, 0) == 0;
}

/// Throws unfold::error naming the file unless the tensors it holds (`shapes`, by name) fit
/// `store`: every parameter there with its shape, and, unless `extra` is ignore, no other tensor
/// — except, when `training` says the file is a training checkpoint, its optimiser and run state
/// (is_training_state_tensor).
inline void check_fits_store(const std::string& path,
                             const std::map<std::string, shape_type>& shapes,
                             const param_store& store, extra_tensors extra, bool training)
{
    std::vector<std::string> missing;
    for (const auto& p : store)
    {
        const auto found = shapes.find(p.name());
        if (found == shapes.end())
        {
            missing.push_back(fmt::format("'{}' {}", p.name(), shape_str(p.shape())));
            continue;
        }
        UNFOLD_CHECK(found->second == p.shape(),
                     "checkpoint {}: tensor '{}' has shape {} in the file, but the parameter has "
                     "shape {}",
                     path, p.name(), shape_str(found->second), shape_str(p.shape()));
    }
    UNFOLD_CHECK(missing.empty(), "checkpoint {}: missing tensor(s) {} required by the model", path,
                 fmt::join(missing, ", "));
    if (extra == extra_tensors::ignore)
        return;
    std::vector<std::string> unexpected;
    for (const auto& [name, shape] : shapes)
        if (!store.contains(name) && !(training && is_training_state_tensor(name)))
            unexpected.push_back("'" + name + "'");
    UNFOLD_CHECK(unexpected.empty(),
                 "checkpoint {}: unexpected tensor(s) {} that the model does not have (pass "
                 "extra_tensors::ignore to skip them)",
                 path, fmt::join(unexpected, ", "));
}

/// load_checkpoint from any source; `path` names it in messages.
inline checkpoint_metadata load_from(const std::string& path, checkpoint_source& in,
                                     param_store& store, extra_tensors extra)
{
    const detail::checkpoint_header h = detail::read_header(path, in);
    std::map<std::string, const detail::checkpoint_entry*> by_name;
    std::map<std::string, shape_type> shapes;
    for (const auto& e : h.entries)
    {
        by_name.emplace(e.name, &e);
        shapes.emplace(e.name, e.shape);
    }
    // A training checkpoint's optimiser and run state is not the model's: loading the model
    // skips it.
    check_fits_store(path, shapes, store, extra, is_training_checkpoint(h.metadata));

    const std::vector<char> data = detail::read_data(path, in, h);
    std::vector<tensor> values;
    values.reserve(store.size());
    for (const auto& p : store)
        values.push_back(detail::decode(path, *by_name.at(p.name()), data.data()));

    // Commit: moves only, nothing here can throw.
    std::size_t i = 0;
    for (auto p : store)
        p.value() = std::move(values[i++]);
    return h.metadata;
}

/// read_checkpoint from any source.
inline checkpoint_contents read_from(const std::string& path, checkpoint_source& in)
{
    const detail::checkpoint_header h = detail::read_header(path, in);
    const std::vector<char> data = detail::read_data(path, in, h);
    checkpoint_contents out;
    out.metadata = h.metadata;
    for (const auto& e : h.entries)
        out.tensors.emplace(e.name, detail::decode(path, e, data.data()));
    return out;
}
} // namespace detail

inline checkpoint_metadata load_checkpoint(const std::string& path, param_store& store,
                                           extra_tensors extra)
{
    detail::checkpoint_source in(path);
    return detail::load_from(path, in, store, extra);
}

/// load_checkpoint from the `size` bytes of a checkpoint file held in memory; `name` stands for
/// the path in error messages. Same validation, same all-or-nothing guarantee.
inline checkpoint_metadata load_checkpoint_from_memory(const void* data, std::size_t size,
                                                       param_store& store,
                                                       extra_tensors extra = extra_tensors::reject,
                                                       const std::string& name = "<memory>")
{
    detail::checkpoint_source in(static_cast<const char*>(data), size);
    return detail::load_from(name, in, store, extra);
}

/// Every tensor and the metadata of `path`, without a model (e.g. to inspect a checkpoint or to
/// rebuild a model from its configuration first). Validated as load_checkpoint does.
inline checkpoint_contents read_checkpoint(const std::string& path)
{
    detail::checkpoint_source in(path);
    return detail::read_from(path, in);
}

/// read_checkpoint from `size` bytes in memory; `name` stands for the path in error messages.
inline checkpoint_contents read_checkpoint_from_memory(const void* data, std::size_t size,
                                                       const std::string& name = "<memory>")
{
    detail::checkpoint_source in(static_cast<const char*>(data), size);
    return detail::read_from(name, in);
}

/// Only the metadata of `path` (the header is read and fully validated; the tensors are not
/// read): the cheap first step of `unfold sample`, which builds the model from it.
inline checkpoint_metadata read_checkpoint_metadata(const std::string& path)
{
    detail::checkpoint_source in(path);
    return detail::read_header(path, in).metadata;
}

} // namespace unfold

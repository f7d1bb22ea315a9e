#pragma once
/// Training checkpoints: the parameters, the optimiser's state and whatever else a training run
/// needs to continue exactly, in one checkpoint file, saved atomically.
///
/// Note [Training checkpoints]
/// A training checkpoint is a checkpoint file (Note [Checkpoint format], same validation, same
/// atomic save: Note [Checkpoint saving never destroys the previous one]) that also holds:
///   - the optimiser's state tensors, named "optimizer/<slot>/<parameter>";
///   - the caller's tensors (a state carried between truncated-BPTT chunks, ...), "run/<name>";
///   - in the metadata, "unfold.training" = "1", the optimiser's name, step count and learning
///     rate, and the caller's own keys (generator states, counters, the run's configuration).
/// Parameters keep their own names (none may start with "optimizer/" or "run/"), so the file is
/// still a model checkpoint: load_checkpoint loads the model and skips the training state's
/// tensors (those named "optimizer/…" and "run/…"), and PyTorch, whose names never contain a '/',
/// loads it after dropping them:
///   model.load_state_dict({k: v for k, v in load_file(path).items() if "/" not in k})
/// Resuming is all or nothing: the parameters and the optimiser change only once everything in the
/// file has been checked against both.

#include <map>
#include <string>
#include <vector>

#include <unfold/framework/checkpoint.hpp>
#include <unfold/framework/optimizer.hpp>

namespace unfold
{

/// What a training run saves besides the parameters and the optimiser.
struct training_state
{
    checkpoint_metadata
        metadata; ///< the caller's keys (not "unfold.training", "unfold.optimizer…")
    std::map<std::string, tensor>
        tensors; ///< the caller's tensors, by name (saved as "run/<name>")
};

namespace detail
{
/// The metadata keys a training checkpoint writes itself.
inline bool training_key(const std::string& key)
{
    return key == "unfold.training" || key.rfind("unfold.optimizer", 0) == 0;
}

/// save_training_checkpoint with the byte writer as a parameter (tests simulate a full disk).
inline void save_training_checkpoint_with(const std::string& path, const param_store& model,
                                          const optimizer& opt, const training_state& run,
                                          const checkpoint_writer& write)
{
    const optimizer_state s = opt.state();
    checkpoint_metadata metadata = run.metadata;
    for (const auto& [key, value] : metadata)
        UNFOLD_CHECK(!training_key(key),
                     "checkpoint {}: the run's metadata key '{}' is reserved for the training "
                     "checkpoint itself",
                     path, key);
    metadata["unfold.training"] = "1";
    metadata["unfold.optimizer"] = s.name;
    metadata["unfold.optimizer.steps"] = metadata_text(s.steps);
    metadata["unfold.optimizer.lr"] = metadata_text(s.lr);

    for (const auto& p : model)
        UNFOLD_CHECK(p.name().rfind(optimizer_prefix, 0) != 0 && p.name().rfind(run_prefix, 0) != 0,
                     "checkpoint {}: the parameter name '{}' is reserved: names starting with '{}' "
                     "or '{}' hold the training state",
                     path, p.name(), optimizer_prefix, run_prefix);
    std::vector<named_tensor> tensors = named_tensors(path, model);
    std::vector<std::string> names;
    names.reserve(s.tensors.size() + run.tensors.size()); // no reallocation: tensors point in
    for (const auto& [name, value] : s.tensors)
    {
        names.push_back(optimizer_prefix + name);
        tensors.push_back({&names.back(), &value});
    }
    for (const auto& [name, value] : run.tensors)
    {
        names.push_back(run_prefix + name);
        tensors.push_back({&names.back(), &value});
    }
    save_tensors_with(path, tensors, metadata, write);
}
} // namespace detail

/// Saves the parameters of `model`, the state of `opt` and `run` to `path` as a training
/// checkpoint (Note [Training checkpoints]), atomically: on failure it throws unfold::error and
/// the previous file is unchanged.
inline void save_training_checkpoint(const std::string& path, const param_store& model,
                                     const optimizer& opt, const training_state& run = {})
{
    detail::save_training_checkpoint_with(path, model, opt, run, detail::write_fully);
}

/// Loads a training checkpoint into `model` and `opt` and returns the run's own metadata and
/// tensors. All or nothing: a file that is not a training checkpoint, a parameter that is missing,
/// misshapen or unexpected, or an optimiser state that does not fit `opt` (another optimiser,
/// other parameters) throws unfold::error naming the file and what differs, and neither `model`
/// nor `opt` changes.
inline training_state load_training_checkpoint(const std::string& path, param_store& model,
                                               optimizer& opt)
{
    checkpoint_contents file = read_checkpoint(path);
    UNFOLD_CHECK(is_training_checkpoint(file.metadata),
                 "checkpoint {}: it holds a model but no training state (it was not saved by a "
                 "training run), so there is nothing to resume",
                 path);
    optimizer_state s;
    s.name = metadata_value<std::string>(file.metadata, "unfold.optimizer", path);
    s.steps = metadata_value<std::size_t>(file.metadata, "unfold.optimizer.steps", path);
    s.lr = metadata_value<double>(file.metadata, "unfold.optimizer.lr", path);

    std::map<std::string, shape_type> shapes;
    for (const auto& [name, value] : file.tensors)
        shapes.emplace(name, value.shape());
    detail::check_fits_store(path, shapes, model, extra_tensors::reject, true);
    training_state run;
    std::vector<tensor> values;
    for (auto& [name, value] : file.tensors)
        if (name.rfind(detail::optimizer_prefix, 0) == 0)
            s.tensors.emplace(name.substr(detail::optimizer_prefix.size()), std::move(value));
        else if (name.rfind(detail::run_prefix, 0) == 0)
            run.tensors.emplace(name.substr(detail::run_prefix.size()), std::move(value));
    for (const auto& p : model)
        values.push_back(std::move(file.tensors.at(p.name())));
    try
    {
        opt.load_state(std::move(s)); // checks everything before it changes anything
    }
    catch (const unfold::error& e)
    {
        fail(fmt::format("checkpoint {}: {}", path, e.what()));
    }
    // Commit: moves only, nothing here can throw.
    std::size_t i = 0;
    for (auto p : model)
        p.value() = std::move(values[i++]);
    for (auto& [key, value] : file.metadata)
        if (!detail::training_key(key))
            run.metadata.emplace(key, std::move(value));
    return run;
}

} // namespace unfold

#pragma once
/// `layer<Cell>`: any cell (Note [Cell contract]) as a PyTorch-style recurrent layer — stacked,
/// bidirectional, with dropout between layers, initial state in, final state out, and
/// variable-length batches. Features are this wrapper, not flags inside the cell.

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/random.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/models/unroll.hpp>
#include <unfold/ops/concat.hpp>
#include <unfold/ops/dropout.hpp>
#include <unfold/ops/select.hpp>
#include <unfold/ops/stack.hpp>

namespace unfold
{

/// The shape of a layer: how many cells are stacked, in how many directions.
struct layer_options
{
    std::size_t num_layers = 1; ///< L, the stacked layers; ≥ 1
    bool bidirectional = false; ///< D = 2: a reverse-direction cell beside each forward one
    /// Dropout probability on the outputs of every stacked layer but the last, applied only while
    /// the layer is training (see layer::train), as in PyTorch.
    real dropout = 0;
    /// Prepended to every parameter name ("encoder." gives "encoder.weight_ih_l0").
    std::string prefix;
};

/// What a layer returns. With D = 2 if bidirectional else 1 and L layers:
struct layer_result
{
    /// (T, B, D·H): the top layer's h at every step, the directions concatenated
    /// (forward first); zero at padded steps of a masked batch. (H here is layer::output_size(),
    /// the features of h: P for an LSTM with projection.)
    var output;
    /// The final state, one var per state part, each (L·D, B, H) in PyTorch's order
    /// (index l·D + d): {h_n} for RNN and GRU, {h_n, c_n} for LSTM; each part with its own
    /// features (layer::state_sizes()). With lengths, the forward final state of a sequence is
    /// its state at its last valid step.
    std::vector<var> final_state;
    /// (B, D·H): the top layer's final h of each direction, concatenated — "the last output" of a
    /// sequence (for the forward direction, h at its last valid step).
    var last;

    /// final_state[0].
    const var& h_n() const { return final_state.at(0); }
    /// final_state[1] (LSTM).
    const var& c_n() const { return final_state.at(1); }
};

/// A recurrent layer over any cell. Cell k = l·D + d runs layer l in direction d; layer 0 reads
/// the input (I features), layer l > 0 the previous layer's output (D·H features).
template <class Cell>
class layer
{
public:
    using cell_type = Cell;             ///< the cell of every layer and direction
    using state = typename Cell::state; ///< one cell's state
    static constexpr std::size_t state_size = state_traits<state>::size; ///< parts of a state

    /// Creates the cell of one layer and direction, adding its parameters to the store under
    /// the given names (param_name::of_layer: "_l{l}", "_l{l}_reverse").
    using cell_factory =
        std::function<Cell(param_store& store, std::size_t input_size, const param_name& name)>;

    /// Builds L·D cells with `make`; `kind` names the layer in error messages ("lstm").
    /// The parameters the cells add to `store` are this layer's params().
    layer(std::string kind, param_store& store, std::size_t input_size, std::size_t hidden_size,
          layer_options options, const cell_factory& make)
        : m_kind(std::move(kind))
        , m_input_size(input_size)
        , m_hidden_size(hidden_size)
        , m_options(std::move(options))
    {
        UNFOLD_CHECK(m_options.num_layers >= 1, "{} layer: num_layers must be at least 1", m_kind);
        UNFOLD_CHECK(m_options.dropout >= 0 && m_options.dropout < 1,
                     "{} layer: dropout {} is outside [0, 1)", m_kind, m_options.dropout);
        const std::size_t first = store.size();
        for (std::size_t l = 0; l < m_options.num_layers; ++l)
            for (std::size_t d = 0; d < directions(); ++d)
                m_cells.push_back(make(store, l == 0 ? input_size : directions() * output_size(),
                                       param_name::of_layer(m_options.prefix, l, d == 1)));
        for (std::size_t k = first; k < store.size(); ++k)
            m_params.push_back(store[k]);
    }

    /// Runs the layer on x (T, B, I).
    /// initial: empty (zeros) or one var per state part, each (L·D, B, H) — {h0} or {h0, c0}.
    /// lengths: empty (every sequence has T steps) or B lengths in [0, T] (Note [Masked
    /// sequences]).
    layer_result operator()(tape& t, const var& x, const std::vector<var>& initial = {},
                            const std::vector<std::size_t>& lengths = {}) const
    {
        UNFOLD_CHECK(x.dimension() == 3 && x.shape()[2] == m_input_size && x.shape()[0] > 0,
                     "{} layer: input has shape {} but the layer expects (T, B, {}) with T > 0",
                     m_kind, shape_str(x.shape()), m_input_size);
        return run(t, input_sequence(x), initial, lengths, shape_str(x.shape()));
    }

    /// The same on a sequence given step by step: xs[t] is (B, I).
    layer_result operator()(tape& t, const std::vector<var>& xs,
                            const std::vector<var>& initial = {},
                            const std::vector<std::size_t>& lengths = {}) const
    {
        UNFOLD_CHECK(!xs.empty(), "{} layer: the input sequence has no steps", m_kind);
        for (std::size_t i = 0; i < xs.size(); ++i)
            UNFOLD_CHECK(xs[i].dimension() == 2 && xs[i].shape()[1] == m_input_size &&
                             xs[i].shape()[0] == xs[0].shape()[0],
                         "{} layer: step {} has shape {} but the layer expects ({}, {})", m_kind, i,
                         shape_str(xs[i].shape()), xs[0].shape()[0], m_input_size);
        return run(t, input_sequence(xs), initial, lengths,
                   fmt::format("of {} steps {}", xs.size(), shape_str(xs[0].shape())));
    }

    /// Training mode: dropout between layers draws its masks from `g` (which must outlive the
    /// calls). Layers start in evaluation mode.
    void train(generator& g) { m_generator = &g; }
    /// Evaluation mode: no dropout.
    void eval() { m_generator = nullptr; }
    /// True between train() and eval().
    bool training() const { return m_generator != nullptr; }
    /// What BPTT keeps of every layer's steps in later calls (Note [Memory policies]);
    /// everything by default.
    void set_bptt_memory(const bptt_memory& memory) { m_memory = memory; }
    /// The memory policy of later calls.
    const bptt_memory& memory() const { return m_memory; }

    /// The parameters of every cell, in creation order (layer, then direction, then the cell's
    /// own order: PyTorch's named_parameters() order for the built-in cells).
    const std::vector<param>& params() const { return m_params; }
    /// The cell of layer l in direction d.
    const Cell& cell(std::size_t l, direction d = direction::forward) const
    {
        const std::size_t k = l * directions() + (d == direction::reverse ? 1 : 0);
        UNFOLD_CHECK(k < m_cells.size(), "{} layer: no cell for layer {}{}", m_kind, l,
                     d == direction::reverse ? " (reverse)" : "");
        return m_cells[k];
    }
    /// I, the features of the input.
    std::size_t input_size() const { return m_input_size; }
    /// H, the features of each cell's state.
    std::size_t hidden_size() const { return m_hidden_size; }
    /// The features of each part of every cell's state, h first: H for each part unless the cell
    /// declares state_sizes() (Note [Cell contract]), e.g. {P, H} for an LSTM with projection.
    state_sizes_type<state> state_sizes() const
    {
        return state_sizes_of(m_cells.front(), m_hidden_size);
    }
    /// The features of h, each direction's part of the output: state_sizes()[0].
    std::size_t output_size() const { return state_sizes()[0]; }
    /// L.
    std::size_t num_layers() const { return m_options.num_layers; }
    /// D: 2 if bidirectional, else 1.
    std::size_t directions() const { return m_options.bidirectional ? 2 : 1; }
    /// The name in error messages ("lstm").
    const std::string& kind() const { return m_kind; }

    /// Dropout between stacked layers on the output `x` of layer l, in training mode; x itself
    /// after the last layer or in evaluation mode. The decoder applies it between its layers too.
    var between_layers(const var& x, std::size_t l) const
    {
        if (l + 1 < m_options.num_layers && m_generator && m_options.dropout > 0)
            return dropout(x, m_options.dropout, *m_generator);
        return x;
    }

private:
    /// The layers over the input; `input` describes it for error messages. Each layer's input is
    /// given to both directions in one form: whole when its cells project it (Note [Input
    /// projection]), so that it is stacked once, and as steps otherwise.
    layer_result run(tape& t, input_sequence x, const std::vector<var>& initial,
                     const std::vector<std::size_t>& lengths, const std::string& input) const
    {
        const std::size_t T = x.length();
        const std::size_t B = x.batch();
        const bool projected = detail::projects<Cell>(t, T);
        const std::size_t LD = m_cells.size();
        UNFOLD_CHECK(initial.empty() || initial.size() == state_size,
                     "{} layer: the initial state has {} parts, the cell's state has {}", m_kind,
                     initial.size(), state_size);
        const state_sizes_type<state> sizes = state_sizes();
        for (std::size_t p = 0; p < initial.size(); ++p)
            UNFOLD_CHECK(initial[p].shape() == shape_type({LD, B, sizes[p]}),
                         "{} layer: initial state{} has shape {} but the input {} needs ({}, {}, "
                         "{}) (layers·directions, batch, {})",
                         m_kind, state_size > 1 ? fmt::format(" part {}", p) : std::string(),
                         shape_str(initial[p].shape()), input, LD, B, sizes[p],
                         sizes[p] == m_hidden_size ? "hidden" : "features of that part");
        UNFOLD_CHECK(lengths.empty() || lengths.size() == B,
                     "{} layer: {} lengths for the input {} with batch {}", m_kind, lengths.size(),
                     input, B);
        for (std::size_t len : lengths)
            UNFOLD_CHECK(len <= T, "{} layer: length {} exceeds the input's {} steps", m_kind, len,
                         T);

        std::vector<std::vector<var>> finals(state_size);
        layer_result result;
        bptt_memory memory = m_memory; // a budget is shared by the L·D unrolls
        if (memory.how == bptt_memory::kind::budget)
            memory.bytes = std::max<std::size_t>(1, memory.bytes / LD);
        std::vector<var> steps;
        for (std::size_t l = 0; l < m_options.num_layers; ++l)
        {
            if (l > 0)
                x = input_sequence(steps);
            // Under a memory policy, steps stay steps: each direction stacks the chunks it
            // projects, dropped with their segments, instead of one whole copy kept throughout.
            if (!projected)
                x = input_sequence(x.steps());
            else if (!m_memory.recomputes())
                x = input_sequence(x.whole());
            std::vector<std::vector<var>> outs;
            std::vector<var> last;
            for (std::size_t d = 0; d < directions(); ++d)
            {
                const std::size_t k = l * directions() + d;
                const direction dir = d == 0 ? direction::forward : direction::reverse;
                const layer_scope in(l, d == 1); // Note [Sites]
                const state s0 =
                    initial.empty() ? zero_state<state>(t, B, sizes) : initial_of(initial, k);
                const std::vector<state> states =
                    unroll(m_cells[k], t, x, s0, {dir, lengths, memory});
                const state& final = states[dir == direction::forward ? T - 1 : 0];
                const auto parts = state_traits<state>::parts(final);
                for (std::size_t p = 0; p < state_size; ++p)
                    finals[p].push_back(parts[p]);
                last.push_back(parts[0]);
                outs.push_back(lengths.empty() ? outputs(states)
                                               : masked_outputs(t, states, lengths));
            }
            steps.resize(T);
            for (std::size_t i = 0; i < T; ++i)
                steps[i] = between_layers(
                    directions() == 1 ? outs[0][i] : concat({outs[0][i], outs[1][i]}, 1), l);
            result.last = directions() == 1 ? last[0] : concat(last, 1);
        }
        result.output = stack(steps);
        for (auto& part : finals)
            result.final_state.push_back(stack(part));
        return result;
    }

    /// The initial state of cell k: part p is initial[p][k], (B, H).
    state initial_of(const std::vector<var>& initial, std::size_t k) const
    {
        typename state_traits<state>::parts_type p;
        for (std::size_t i = 0; i < state_size; ++i)
            p[i] = select(initial[i], k);
        return state_traits<state>::from_parts(p);
    }

    std::string m_kind;
    std::size_t m_input_size;
    std::size_t m_hidden_size;
    layer_options m_options;
    std::vector<Cell> m_cells;
    std::vector<param> m_params;
    generator* m_generator = nullptr;
    bptt_memory m_memory;
};

/// A layer of a cell type that offers
///     static Cell create(param_store&, std::size_t input_size, std::size_t hidden_size,
///                        generator&, Options, const param_name&);
/// as the built-in cells do: each layer and direction gets a cell created with `options`.
template <class Cell, class Options>
layer<Cell> layer_of(std::string kind, param_store& store, std::size_t input_size,
                     std::size_t hidden_size, generator& g, layer_options lo, Options options)
{
    return layer<Cell>(
        std::move(kind), store, input_size, hidden_size, std::move(lo),
        [&g, options, hidden_size](param_store& s, std::size_t in, const param_name& n) {
            return Cell::create(s, in, hidden_size, g, options, n);
        });
}

} // namespace unfold

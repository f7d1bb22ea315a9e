#pragma once
/// Parameters live outside tapes, in a named store; a tape binds each one as a leaf (see
/// framework/tape.hpp). Their gradients accumulate across backward calls until zeroed.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/tensor.hpp>

namespace unfold
{

namespace detail
{
struct param_data
{
    std::string name;
    tensor value;
    tensor grad;
    shape_type shape; // declared shape; value must keep it
};
} // namespace detail

/// A named trainable tensor with its accumulated gradient. A cheap, copyable handle: copies refer
/// to the same parameter. See Note [Gradient accumulation].
class param
{
public:
    param() = default;
    /// A new parameter holding `value`, whose shape becomes its declared shape; gradient zeros.
    param(std::string name, tensor value)
        : m_data(std::make_shared<detail::param_data>())
    {
        m_data->name = std::move(name);
        m_data->shape = value.shape();
        m_data->grad = zeros(value.shape());
        m_data->value = std::move(value);
    }

    /// False for a default-constructed handle, which throws on every other use.
    bool defined() const { return m_data != nullptr; }
    /// The name given at creation (a checkpoint's tensor name).
    const std::string& name() const { return data().name; }
    /// The declared shape, fixed at creation.
    const shape_type& shape() const { return data().shape; }
    /// The element count of the declared shape.
    std::size_t size() const { return element_count(data().shape); }

    /// The current value. The mutable overload is for in-place updates (optimisers); the shape
    /// must not change (checked when the parameter is next bound to a tape).
    const tensor& value() const { return data().value; }
    /// The value, for in-place updates: keep its shape.
    tensor& value() { return data().value; }
    /// Replaces the value; throws unless `v` has the declared shape.
    void assign(const tensor& v)
    {
        UNFOLD_CHECK(v.shape() == shape(),
                     "parameter '{}': cannot assign a value of shape {}, "
                     "the parameter has shape {}",
                     name(), shape_str(v.shape()), shape_str(shape()));
        data().value = v;
    }

    /// The gradient summed over every backward since the last zero_grad().
    const tensor& grad() const { return data().grad; }
    /// The gradient, writable (backward adds into it; clipping scales it in place).
    tensor& grad() { return data().grad; }
    /// Sets the gradient to zeros.
    void zero_grad() { data().grad.fill(real(0)); }

    /// The identity shared by every copy of this handle (tapes key their leaves by it).
    const void* id() const { return m_data.get(); }
    /// True when both handles refer to the same parameter (not equal values).
    friend bool operator==(const param& a, const param& b) { return a.m_data == b.m_data; }

private:
    detail::param_data& data() const
    {
        UNFOLD_CHECK(m_data, "use of an empty (default-constructed) parameter handle");
        return *m_data;
    }
    std::shared_ptr<detail::param_data> m_data;
};

/// An ordered collection of uniquely named parameters (a model's state).
class param_store
{
public:
    /// Creates and registers a parameter; names must be unique within the store.
    param add(std::string name, tensor value)
    {
        UNFOLD_CHECK(!contains(name), "param_store: a parameter named '{}' already exists", name);
        m_params.emplace_back(std::move(name), std::move(value));
        return m_params.back();
    }
    /// True when a parameter is named `name`.
    bool contains(const std::string& name) const
    {
        for (const auto& p : m_params)
            if (p.name() == name)
                return true;
        return false;
    }
    /// The parameter named `name`; throws if there is none.
    param get(const std::string& name) const
    {
        for (const auto& p : m_params)
            if (p.name() == name)
                return p;
        fail(fmt::format("param_store: no parameter named '{}'", name));
    }
    /// Zeroes the gradient of every parameter.
    void zero_grad()
    {
        for (auto& p : m_params)
            p.zero_grad();
    }
    /// The number of parameters.
    std::size_t size() const { return m_params.size(); }
    /// The number of scalars in all the parameters (PyTorch's sum of numel()).
    std::size_t element_count() const
    {
        std::size_t n = 0;
        for (const auto& p : m_params)
            n += p.size();
        return n;
    }
    /// Parameter i in the order added; throws std::out_of_range past the end.
    const param& operator[](std::size_t i) const { return m_params.at(i); }
    /// Iteration over the parameters in the order added.
    auto begin() const { return m_params.begin(); }
    /// The end of that iteration.
    auto end() const { return m_params.end(); }

private:
    std::vector<param> m_params;
};

} // namespace unfold

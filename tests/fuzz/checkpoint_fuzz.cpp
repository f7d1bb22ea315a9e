// libFuzzer target: the checkpoint loader (framework/checkpoint.hpp) on arbitrary bytes.
// Every input must either load or throw unfold::error; a failed load must leave the model's
// parameters bit-identical (Note [Checkpoint loading never trusts the file]). Anything else (a
// crash, a sanitizer report, another exception, a changed parameter) is a finding.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <unfold/framework/checkpoint.hpp>

namespace
{
/// The model the inputs are loaded into: the names and shapes of the seed corpus.
unfold::param_store& store()
{
    static unfold::param_store s = [] {
        unfold::param_store p;
        p.add("weight", unfold::tensor({{1, 2, 3}, {4, 5, 6}}));
        p.add("bias", unfold::tensor({7, 8, 9}));
        return p;
    }();
    return s;
}

bool same_bits(const unfold::tensor& a, const unfold::tensor& b)
{
    return a.shape() == b.shape() &&
           std::memcmp(a.data(), b.data(), a.size() * sizeof(unfold::real)) == 0;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    unfold::param_store& s = store();
    std::vector<unfold::tensor> before;
    for (const auto& p : s)
        before.push_back(p.value());
    try
    {
        unfold::load_checkpoint_from_memory(data, size, s);
    }
    catch (const unfold::error&)
    {
        std::size_t i = 0;
        for (const auto& p : s)
            if (!same_bits(p.value(), before[i++]))
                std::abort(); // a failed load changed a parameter
    }
    std::size_t i = 0;
    for (auto p : s) // undo a successful load for the next input
        p.value() = before[i++];
    try
    {
        (void)unfold::read_checkpoint_from_memory(data, size);
    }
    catch (const unfold::error&)
    {}
    return 0;
}

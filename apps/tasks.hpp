#pragma once
/// The built-in tasks `unfold train` learns, none of which needs a download, and make_task, which
/// makes one by name: `addition` ("37+85=122", apps/addition_task.hpp), `copy` ("cbad|cbad",
/// apps/copy_task.hpp), `reber` (the embedded Reber grammar, apps/reber_task.hpp) and `reverse`
/// ("31415=51413", apps/reverse_task.hpp, for an encoder–decoder). Each example
/// is a prompt and an answer over a character vocabulary; the model reads "<s>" + prompt and must
/// write answer + "</s>" (Note [Examples as batches] in models/batching.hpp). The other thing it
/// learns, a character-level language model of any UTF-8 text file, is models/text.hpp.

#include <cstddef>
#include <memory>
#include <string>

#include <unfold/framework/error.hpp>

#include "apps/addition_task.hpp"
#include "apps/copy_task.hpp"
#include "apps/reber_task.hpp"
#include "apps/reverse_task.hpp"

namespace unfold::app
{

/// The built-in task called `name` ("addition", "copy", "reber", "reverse"); throws for any other
/// name.
/// `digits` is the operand length of addition (1: 20 of its 100 problems are held out; more:
/// 1000 are).
inline std::unique_ptr<task> make_task(const std::string& name, std::size_t digits = 2)
{
    if (name == "addition")
        return std::make_unique<addition_task>(digits, digits == 1 ? 20 : 1000);
    if (name == "copy")
        return std::make_unique<copy_task>();
    if (name == "reber")
        return std::make_unique<reber_task>();
    if (name == "reverse")
        return std::make_unique<reverse_task>();
    unfold::fail(
        fmt::format("unknown task '{}' (expected addition, copy, reber or reverse)", name));
}

} // namespace unfold::app

// program.json (the ML Program in protobuf's JSON mapping), parsed into
// functions of ops whose arguments are value names or inline constants.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mil/op.h"
#include "mil/weight_store.h"

namespace staticllm::mil {

// A constant: a tensor, or a string (MIL strings have no tensor form).
// Sub-byte weight blobs stay packed as stored (`packed`, `tensor` empty):
// kernels read them that way, and the planner unpacks them only for an op
// that needs the values one per byte.
struct ConstValue {
  bool is_string = false;
  std::string str;
  Tensor tensor;
  std::shared_ptr<const PackedInts> packed;
};

struct ValueDecl {
  std::string name;
  ValueType type;
  bool is_string = false;
  bool is_state = false;  // a function input of state type
};

// One argument of a parameter: a named value, or an inline constant.
struct Binding {
  std::string name;
  std::shared_ptr<ConstValue> value;
};

struct OpDecl;

// A nested block of a control-flow op (cond's branches, while_loop's
// condition and body): its inputs (while_loop's loop variables, renamed), its
// ops and the names it yields. Its ops may read any value of the scopes
// around it.
struct BlockDecl {
  std::vector<ValueDecl> inputs;
  std::vector<OpDecl> ops;
  std::vector<std::string> outputs;
};

struct OpDecl {
  std::string type;
  std::string name;  // first output's name, for messages
  std::map<std::string, std::vector<Binding>> inputs;
  std::vector<ValueDecl> outputs;
  std::shared_ptr<ConstValue> const_val;  // for "const" ops
  std::vector<BlockDecl> blocks;          // cond, while_loop
  bool unparsed = false;                  // an unsupported op whose types could not be parsed
};

struct FunctionDecl {
  std::string name;
  // The iOS release of the function's opset ("CoreML5" is iOS15, ..., "CoreML8"
  // iOS18); 0 when the opset is not named that way. Some ops changed meaning
  // between releases (iOS17 gathers and scatters refuse negative indices).
  int ios_opset = 0;
  std::vector<ValueDecl> inputs;
  std::vector<OpDecl> ops;
  std::vector<std::string> outputs;
};

struct Program {
  std::map<std::string, FunctionDecl> functions;
};

// Parses the file; blob constants are read through `weights` (validated there).
// BundleError names the file and the JSON location of any problem.
Program load_program(const std::string& path, WeightStore* weights);

}  // namespace staticllm::mil

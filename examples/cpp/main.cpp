// metatomic-evaluate: load an exported metatomic model (.pt) with metatomic's
// C++ API and compute the energy, forces and virial of one structure.
//
// This follows the steps of LAMMPS' `pair_style metatomic`: load and check the
// model, pick a device, build a `System` in the model's dtype, compute every
// neighbour list the model requests (here by brute force over periodic images),
// attach it with `register_autograd_neighbors`, run the model, and get forces
// and virial by back-propagation through positions and a strain.
//
// Usage:
//   metatomic-evaluate MODEL.pt STRUCTURE.txt [--device cpu|cuda]
//                      [--repeat N] [--check-consistency]
//
// STRUCTURE.txt (lengths in Angstrom):
//   line 1: number of atoms N
//   line 2: the nine cell components, row-major (one cell vector per row)
//   line 3: three periodicity flags (0 or 1) along the cell vectors
//   N lines: atomic number, x, y, z
//
// Output (eV, eV/Angstrom), with 17 significant digits:
//   energy E
//   forces            followed by N lines "fx fy fz"
//   virial            followed by 3 lines (-dE/dstrain, eV)
//   ms_per_evaluation T   (only with --repeat N > 0: mean over N evaluations,
//                          neighbour search included, after 10 warm-up ones)

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include <metatensor/torch.hpp>
#include <metatomic/torch.hpp>

namespace {

struct Structure {
    std::vector<int32_t> types;
    std::vector<std::array<double, 3>> positions;
    std::array<std::array<double, 3>, 3> cell = {};
    std::array<bool, 3> pbc = {false, false, false};
};

struct Arguments {
    std::string model_path;
    std::string structure_path;
    std::string device = "cpu";
    int repeat = 0;
    bool check_consistency = false;
};

Arguments parse_arguments(int argc, char** argv) {
    auto args = Arguments();
    auto positional = std::vector<std::string>();
    for (int i = 1; i < argc; i++) {
        auto arg = std::string(argv[i]);
        if (arg == "--device" && i + 1 < argc) {
            args.device = argv[++i];
        } else if (arg == "--repeat" && i + 1 < argc) {
            args.repeat = std::stoi(argv[++i]);
        } else if (arg == "--check-consistency") {
            args.check_consistency = true;
        } else if (arg.rfind("--", 0) == 0) {
            throw std::runtime_error("unknown option " + arg);
        } else {
            positional.push_back(arg);
        }
    }
    if (positional.size() != 2) {
        throw std::runtime_error(
            "usage: metatomic-evaluate MODEL.pt STRUCTURE.txt "
            "[--device cpu|cuda] [--repeat N] [--check-consistency]"
        );
    }
    args.model_path = positional[0];
    args.structure_path = positional[1];
    return args;
}

Structure read_structure(const std::string& path) {
    auto file = std::ifstream(path);
    if (!file) {
        throw std::runtime_error("can not open " + path);
    }
    auto structure = Structure();
    size_t n_atoms = 0;
    file >> n_atoms;
    for (auto& row: structure.cell) {
        file >> row[0] >> row[1] >> row[2];
    }
    for (auto& periodic: structure.pbc) {
        int flag = 0;
        file >> flag;
        periodic = flag != 0;
    }
    structure.types.resize(n_atoms);
    structure.positions.resize(n_atoms);
    for (size_t i = 0; i < n_atoms; i++) {
        auto& r = structure.positions[i];
        file >> structure.types[i] >> r[0] >> r[1] >> r[2];
    }
    if (!file) {
        throw std::runtime_error("malformed structure file " + path);
    }
    return structure;
}

std::array<double, 3> cross(const std::array<double, 3>& a, const std::array<double, 3>& b) {
    return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

double dot(const std::array<double, 3>& a, const std::array<double, 3>& b) {
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

/// Pairs within `cutoff`, with the integer cell shifts that take the second
/// atom to its periodic image.
struct Pairs {
    std::vector<int32_t> samples;  // n_pairs x 5: i, j, shift_a, shift_b, shift_c
    std::vector<double> vectors;   // n_pairs x 3: r_j - r_i + shift . cell
};

/// Brute-force neighbour search over all periodic images that can be within
/// `cutoff`. Along a periodic direction k the fractional component of any pair
/// vector shorter than the cutoff is at most cutoff/d_k (d_k: distance between
/// lattice planes), and atoms span at most `span_k` in fractional coordinates,
/// so shifts up to ceil(cutoff/d_k + span_k) are enough.
Pairs neighbor_pairs(const Structure& structure, double cutoff, bool full_list) {
    const auto& cell = structure.cell;
    auto n_atoms = structure.positions.size();

    std::array<int, 3> max_shift = {0, 0, 0};
    if (structure.pbc[0] || structure.pbc[1] || structure.pbc[2]) {
        auto volume = dot(cell[0], cross(cell[1], cell[2]));
        if (std::abs(volume) < 1e-12) {
            throw std::runtime_error("periodic structure with a singular cell");
        }
        // rows of the reciprocal basis, without the 2 pi: b_k . a_l = delta_kl
        std::array<std::array<double, 3>, 3> reciprocal = {};
        for (int k = 0; k < 3; k++) {
            auto b = cross(cell[(k + 1) % 3], cell[(k + 2) % 3]);
            for (int x = 0; x < 3; x++) {
                reciprocal[k][x] = b[x] / volume;
            }
        }
        for (int k = 0; k < 3; k++) {
            if (!structure.pbc[k]) {
                continue;
            }
            auto lowest = std::numeric_limits<double>::infinity();
            auto highest = -std::numeric_limits<double>::infinity();
            for (const auto& r: structure.positions) {
                auto fractional = dot(r, reciprocal[k]);
                lowest = std::min(lowest, fractional);
                highest = std::max(highest, fractional);
            }
            auto plane_distance = 1.0 / std::sqrt(dot(reciprocal[k], reciprocal[k]));
            auto span = n_atoms == 0 ? 0.0 : highest - lowest;
            max_shift[k] = static_cast<int>(std::ceil(cutoff / plane_distance + span));
        }
    }

    auto pairs = Pairs();
    auto cutoff2 = cutoff * cutoff;
    for (int sa = -max_shift[0]; sa <= max_shift[0]; sa++) {
    for (int sb = -max_shift[1]; sb <= max_shift[1]; sb++) {
    for (int sc = -max_shift[2]; sc <= max_shift[2]; sc++) {
        auto zero_shift = sa == 0 && sb == 0 && sc == 0;
        // a half list keeps (i, j, S) for i < j, and (i, i, S) for S > 0 only
        auto positive_shift = sa > 0 || (sa == 0 && (sb > 0 || (sb == 0 && sc > 0)));
        std::array<double, 3> offset = {};
        for (int x = 0; x < 3; x++) {
            offset[x] = sa * cell[0][x] + sb * cell[1][x] + sc * cell[2][x];
        }
        for (size_t i = 0; i < n_atoms; i++) {
            for (size_t j = 0; j < n_atoms; j++) {
                if (i == j && (zero_shift || (!full_list && !positive_shift))) {
                    continue;
                }
                if (!full_list && i > j) {
                    continue;
                }
                const auto& ri = structure.positions[i];
                const auto& rj = structure.positions[j];
                std::array<double, 3> vector = {
                    rj[0] - ri[0] + offset[0],
                    rj[1] - ri[1] + offset[1],
                    rj[2] - ri[2] + offset[2],
                };
                if (dot(vector, vector) >= cutoff2) {
                    continue;
                }
                pairs.samples.insert(pairs.samples.end(), {
                    static_cast<int32_t>(i), static_cast<int32_t>(j), sa, sb, sc
                });
                pairs.vectors.insert(pairs.vectors.end(), vector.begin(), vector.end());
            }
        }
    }
    }
    }
    return pairs;
}

/// Wrap `pairs` in the TensorBlock layout metatomic expects for neighbour lists.
metatensor_torch::TensorBlock neighbors_block(
    const Pairs& pairs,
    torch::Dtype dtype,
    torch::Device device
) {
    auto n_pairs = static_cast<int64_t>(pairs.samples.size() / 5);
    auto int_options = torch::TensorOptions().dtype(torch::kInt32);
    auto float_options = torch::TensorOptions().dtype(torch::kFloat64);

    auto sample_values = torch::from_blob(
        const_cast<int32_t*>(pairs.samples.data()), {n_pairs, 5}, int_options
    ).clone().to(device);
    auto vectors = torch::from_blob(
        const_cast<double*>(pairs.vectors.data()), {n_pairs, 3, 1}, float_options
    ).to(dtype).to(device).clone();

    auto samples = torch::make_intrusive<metatensor_torch::LabelsHolder>(
        std::vector<std::string>{
            "first_atom", "second_atom", "cell_shift_a", "cell_shift_b", "cell_shift_c"
        },
        sample_values
    );
    auto xyz = torch::make_intrusive<metatensor_torch::LabelsHolder>(
        std::vector<std::string>{"xyz"},
        torch::arange(3, int_options).reshape({3, 1}).to(device)
    );
    auto distance = torch::make_intrusive<metatensor_torch::LabelsHolder>(
        std::vector<std::string>{"distance"},
        torch::zeros({1, 1}, int_options).to(device)
    );
    return torch::make_intrusive<metatensor_torch::TensorBlockHolder>(
        vectors, samples, std::vector<metatensor_torch::Labels>{xyz}, distance
    );
}

torch::Dtype dtype_from_string(const std::string& dtype) {
    if (dtype == "float64") {
        return torch::kFloat64;
    } else if (dtype == "float32") {
        return torch::kFloat32;
    }
    throw std::runtime_error("unsupported model dtype " + dtype);
}

struct Result {
    double energy = 0.0;
    torch::Tensor forces;
    torch::Tensor virial;
};

class Evaluator {
public:
    Evaluator(const std::string& model_path, const std::string& desired_device):
        model_(metatomic_torch::load_atomistic_model(model_path)),
        device_(torch::kCPU)
    {
        model_.eval();
        auto capabilities = model_.run_method("capabilities")
            .toCustomClass<metatomic_torch::ModelCapabilitiesHolder>();
        dtype_ = dtype_from_string(capabilities->dtype());
        device_ = torch::Device(metatomic_torch::pick_device(
            capabilities->supported_devices, desired_device
        ));
        model_.to(device_);

        for (const auto& request: model_.run_method("requested_neighbor_lists").toList()) {
            neighbor_lists_.push_back(
                request.get().toCustomClass<metatomic_torch::NeighborListOptionsHolder>()
            );
        }

        auto energy = torch::make_intrusive<metatomic_torch::ModelOutputHolder>(
            /*quantity, deprecated*/ "", "eV", "system", std::vector<std::string>{}, ""
        );
        auto outputs = torch::Dict<std::string, metatomic_torch::ModelOutput>();
        outputs.insert("energy", energy);
        options_ = torch::make_intrusive<metatomic_torch::ModelEvaluationOptionsHolder>(
            "angstrom", outputs, torch::nullopt
        );
    }

    torch::Device device() const {
        return device_;
    }

    Result evaluate(const Structure& structure, bool check_consistency) {
        auto n_atoms = static_cast<int64_t>(structure.types.size());
        auto float_options = torch::TensorOptions().dtype(torch::kFloat64);

        auto types = torch::from_blob(
            const_cast<int32_t*>(structure.types.data()), {n_atoms},
            torch::TensorOptions().dtype(torch::kInt32)
        ).clone().to(device_);
        auto positions = torch::from_blob(
            const_cast<double*>(structure.positions.data()->data()), {n_atoms, 3},
            float_options
        ).to(dtype_).to(device_).clone().requires_grad_(true);
        auto cell = torch::from_blob(
            const_cast<double*>(structure.cell.data()->data()), {3, 3}, float_options
        ).to(dtype_).to(device_).clone();
        auto pbc = torch::tensor(
            std::vector<int32_t>{structure.pbc[0], structure.pbc[1], structure.pbc[2]}
        ).to(torch::kBool).to(device_);
        // cell vectors along non-periodic directions carry no meaning
        cell = cell * pbc.to(dtype_).reshape({3, 1});

        auto strain = torch::eye(3, torch::TensorOptions().dtype(dtype_).device(device_))
            .requires_grad_(true);
        auto system = torch::make_intrusive<metatomic_torch::SystemHolder>(
            types, positions.matmul(strain), cell.matmul(strain), pbc
        );

        for (const auto& request: neighbor_lists_) {
            auto pairs = neighbor_pairs(
                structure, request->engine_cutoff("angstrom"), request->full_list()
            );
            auto block = neighbors_block(pairs, dtype_, device_);
            metatomic_torch::register_autograd_neighbors(system, block, check_consistency);
            system->add_neighbor_list(request, block);
        }

        auto systems = c10::List<metatomic_torch::System>();
        systems.push_back(system);
        auto outputs = model_.forward({systems, options_, check_consistency})
            .toGenericDict();
        auto energy_map = outputs.at("energy")
            .toCustomClass<metatensor_torch::TensorMapHolder>();
        auto energy = metatensor_torch::TensorMapHolder::block_by_id(energy_map, 0)
            ->values().sum();

        energy.backward();

        auto result = Result();
        result.energy = energy.item<double>();
        result.forces = -positions.grad().to(torch::kCPU).to(torch::kFloat64);
        result.virial = -strain.grad().to(torch::kCPU).to(torch::kFloat64);
        return result;
    }

private:
    metatensor_torch::Module model_;
    torch::Device device_;
    torch::Dtype dtype_ = torch::kFloat64;
    std::vector<metatomic_torch::NeighborListOptions> neighbor_lists_;
    metatomic_torch::ModelEvaluationOptions options_;
};

/// Evaluations run before timing `--repeat N` evaluations.
constexpr int timing_warmup = 10;

void print_matrix(const torch::Tensor& matrix) {
    auto accessor = matrix.accessor<double, 2>();
    for (int64_t i = 0; i < matrix.size(0); i++) {
        std::printf(
            "%.17g %.17g %.17g\n", accessor[i][0], accessor[i][1], accessor[i][2]
        );
    }
}

}  // namespace

int main(int argc, char** argv) {
    try {
        auto args = parse_arguments(argc, argv);
        auto structure = read_structure(args.structure_path);
        auto evaluator = Evaluator(args.model_path, args.device);

        auto result = evaluator.evaluate(structure, args.check_consistency);
        std::printf("energy %.17g\n", result.energy);
        std::printf("forces\n");
        print_matrix(result.forces);
        std::printf("virial\n");
        print_matrix(result.virial);

        if (args.repeat > 0) {
            // the first calls of a TorchScript model are slow while the JIT
            // profiles and optimises the graph; keep them out of the timing
            for (int i = 0; i < timing_warmup; i++) {
                evaluator.evaluate(structure, false);
            }
            auto start = std::chrono::steady_clock::now();
            for (int i = 0; i < args.repeat; i++) {
                evaluator.evaluate(structure, false);
            }
            if (evaluator.device().is_cuda()) {
                torch::cuda::synchronize();
            }
            auto elapsed = std::chrono::duration<double, std::milli>(
                std::chrono::steady_clock::now() - start
            );
            std::printf("ms_per_evaluation %.6g\n", elapsed.count() / args.repeat);
        }
    } catch (const std::exception& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 1;
    }
    return 0;
}

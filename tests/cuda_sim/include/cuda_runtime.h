#pragma once
#include "lc_sim.h"

package main

import (
	"github.com/spf13/cobra"

	"github.com/rtgate/rtgate/bridge/v4l2"
)

const devicesLong = `List the V4L2 cameras (/dev/video*) with their formats, frame sizes and
frame rates, as "v4l2-ctl --list-formats-ext" shows them. A camera that offers
H264 can be published as-is with a source such as
  v4l2:///dev/video0?codec=h264&width=1280&height=720&fps=30&gop=60`

func newDevicesCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "devices",
		Short: "List V4L2 cameras with their formats, sizes and frame rates",
		Long:  devicesLong,
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			devs, err := v4l2.ListDevices()
			if err != nil {
				return err
			}
			return devs.Format(a.stdout)
		},
	}
}
